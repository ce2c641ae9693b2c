"""Turning untrusted input into typed, valid resources.

`decode_object` is the one entry point: structural checks against the type (every unsupported
field, missing field and wrong type), then the semantic rules of the kind (names, labels,
selectors, ports, quantities, probes). All causes are raised together in one `Invalid`.
"""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi

from bus import kinds
from bus.errors import BadRequest, StatusCause, invalid
from bus.meta import Resource
from bus.validation.schema import (
    FIELD_NOT_SUPPORTED,
    check_struct,
    drop_nulls,
    show,
    type_tree,
    without_unsupported,
)
from bus.validation.semantic import validate

__all__ = ["decode_object", "validate", "check_api_version"]


def check_api_version(info: kinds.KindInfo, api_version: Any) -> None:
    if api_version != info.api_version:
        raise BadRequest(
            f'no matches for kind "{info.kind}" in version {show(api_version)} '
            f"(use apiVersion: {info.api_version})"
        )


def decode_object(raw: Any, *, expected: kinds.KindInfo | None = None) -> Resource:
    """A valid resource from `raw`, or `Invalid` naming every cause, or `BadRequest`."""
    if not isinstance(raw, dict):
        raise BadRequest(f"an object must be a mapping, not {type(raw).__name__}")
    kind = raw.get("kind")
    if not kind or not isinstance(kind, str):
        raise BadRequest("Object 'Kind' is missing")
    if kind not in kinds.BY_KIND:
        known = ", ".join(sorted(kinds.BY_KIND))
        raise BadRequest(f"no kind {show(kind)} is registered (known kinds: {known})")
    info = kinds.BY_KIND[kind]
    if expected is not None and info is not expected:
        raise BadRequest(f"kind {kind} sent to the {expected.plural} endpoint")
    check_api_version(info, raw.get("apiVersion"))
    name = _name_of(raw)
    causes: list[StatusCause] = []
    tree = type_tree(info.type)
    assert isinstance(tree, mi.StructType)
    check_struct(raw, tree, "", causes, skip=frozenset({"apiVersion"}))
    if any(cause.message != FIELD_NOT_SUPPORTED for cause in causes):
        raise invalid(info.kind, name, causes)
    # Only unsupported fields so far: check the rest too, so every cause is reported at once.
    try:
        obj = msgspec.convert(drop_nulls(without_unsupported(raw, tree)), info.type)
    except msgspec.ValidationError as err:  # the structural walk should have caught it; say so plainly
        raise invalid(info.kind, name, [*causes, StatusCause(message=str(err))]) from None
    causes += validate(obj)
    if causes:
        raise invalid(info.kind, name, causes)
    return obj


def _name_of(raw: dict[str, Any]) -> str:
    metadata = raw.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str):
        return ""
    return name if len(name) <= 253 else f"{name[:60]}... ({len(name)} characters)"
