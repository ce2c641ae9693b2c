"""Object metadata and the base every resource kind derives from.

Field names are Kubernetes' (camelCase on the wire). Fields that may be absent default to empty
values and are omitted when encoded, so objects stay small and new fields can be added later
without breaking stored data (msgspec's schema evolution rules).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, ClassVar, Literal, Protocol

import msgspec

ConditionStatus = Literal["True", "False", "Unknown"]

# Integers as Kubernetes types them: int32 for counts, ports, probe and most seconds fields,
# int64 for generations and grace periods. The bounds are checked when an object is decoded, so
# `replicas: 18446744073709551616` is rejected instead of being stored and acted on.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Int32 = Annotated[int, msgspec.Meta(ge=INT32_MIN, le=INT32_MAX)]
Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]


class HasCondition(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def status(self) -> str: ...


def is_true(conditions: Sequence[HasCondition], type_: str = "Ready") -> bool:
    """Whether the condition `type_` (Ready by default) is present and True."""
    return any(c.type == type_ and c.status == "True" for c in conditions)


class Base(msgspec.Struct, omit_defaults=True, rename="camel", kw_only=True):
    """Every nested type: camelCase names, empty fields left out."""


class OwnerReference(Base):
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(Base):
    name: str = ""
    generate_name: str = ""
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    generation: Int64 = 0
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    deletion_grace_period_seconds: Int64 | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    owner_references: list[OwnerReference] = []
    finalizers: list[str] = []


class ListMeta(Base):
    """A list's metadata. A list served in pages sets `continue` (the token that asks for the
    next page) and `remainingItemCount` on every page but the last."""

    resource_version: str = ""
    continue_: str = msgspec.field(default="", name="continue")
    remaining_item_count: Int64 | None = None


class LabelSelectorRequirement(Base):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = []


class LabelSelector(Base):
    match_labels: dict[str, str] = {}
    match_expressions: list[LabelSelectorRequirement] = []


class ObjectReference(Base):
    api_version: str = ""
    kind: str = ""
    namespace: str = ""
    name: str = ""
    uid: str = ""
    resource_version: str = ""
    field_path: str = ""


class Resource(msgspec.Struct, omit_defaults=True, rename="camel", kw_only=True, tag_field="kind", tag=True):
    """Base of every top-level kind. `kind` is the msgspec tag, so it is always on the wire.

    `apiVersion` starts empty and is filled in after construction, so that it too is always
    encoded (an omitted default would be left out).
    """

    API_VERSION: ClassVar[str] = "v1"

    api_version: str = ""
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)

    def __post_init__(self) -> None:
        if not self.api_version:
            self.api_version = self.API_VERSION

    @property
    def kind(self) -> str:
        return type(self).__name__
