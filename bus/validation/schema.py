"""Structural checks of a raw (decoded JSON/YAML) object against a resource type.

msgspec stops at the first error; Kubernetes reports every cause of an invalid object at once.
So before converting, we walk the raw value beside the msgspec type tree and collect every
unsupported field, missing required field and wrong type, each with its path
(`spec.template.spec.containers[0].image`).
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import msgspec
import msgspec.inspect as mi

from bus.errors import StatusCause

FIELD_NOT_SUPPORTED = "field not supported"

_TYPE_NAMES = {
    mi.StrType: "string",
    mi.IntType: "integer",
    mi.FloatType: "number",
    mi.BoolType: "boolean",
    mi.ListType: "array",
    mi.DictType: "object",
    mi.StructType: "object",
    mi.DateTimeType: "timestamp",
}


@functools.cache
def type_tree(cls: type) -> mi.Type:
    return mi.type_info(cls)


SHOWN_MAX = 120


def _int_text(value: int) -> str:
    """The integer, or its size when it is too long to print (Python refuses past 4300 digits)."""
    if value.bit_length() <= 256:
        return str(value)
    return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"


def show(value: object) -> str:
    """A value as Kubernetes prints it in a message: strings quoted, numbers bare. A long value
    is cut short (saying how long it was), so that an error never echoes a megabyte back."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return _int_text(value)
    text = msgspec.json.encode(value).decode()
    if len(text) <= SHOWN_MAX:
        return text
    length = f"{len(value)} characters" if isinstance(value, str) else f"{len(text)} bytes as JSON"
    return f"{text[:SHOWN_MAX]}... ({length})"


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _describe(t: mi.Type) -> str:
    if isinstance(t, mi.UnionType):
        return " or ".join(_describe(x) for x in t.types if not isinstance(x, mi.NoneType))
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(f'"{v}"' for v in t.values)
    return _TYPE_NAMES.get(type(t), type(t).__name__)


def _json_type(value: Any) -> str:
    match value:
        case bool():
            return "boolean"
        case int():
            return "integer"
        case float():
            return "number"
        case str():
            return "string"
        case list():
            return "array"
        case dict():
            return "object"
        case None:
            return "null"
    return type(value).__name__


def wrong_type(path: str, value: Any, expected: str) -> StatusCause:
    return StatusCause(
        field=path,
        message=f"Invalid value: {_json_type(value)}: expected {expected}",
        reason="FieldValueTypeInvalid",
    )


def _matches(value: Any, t: mi.Type) -> bool:
    """Whether `value` has the shape of `t` at this level (children are checked separately)."""
    match t:
        case mi.AnyType():
            return True
        case mi.NoneType():
            return value is None
        case mi.StrType():
            return isinstance(value, str)
        case mi.BoolType():
            return isinstance(value, bool)
        case mi.IntType():
            return isinstance(value, int) and not isinstance(value, bool)
        case mi.FloatType():
            return isinstance(value, int | float) and not isinstance(value, bool)
        case mi.ListType():
            return isinstance(value, list)
        case mi.DictType() | mi.StructType():
            return isinstance(value, dict)
        case mi.DateTimeType():
            return isinstance(value, str | datetime)
        case mi.LiteralType():
            return value in t.values
        case mi.UnionType():
            return any(_matches(value, x) for x in t.types)
    return False


_WIDTHS = {2**31 - 1: "int32", 2**63 - 1: "int64"}


def _out_of_range(value: int, t: mi.IntType) -> str:
    """What is wrong with an integer outside its type's range (`Int32`, `Int64`), or ""."""
    width = f" (an {_WIDTHS[t.le]})" if t.le in _WIDTHS else ""
    if t.ge is not None and value < t.ge:
        return f"must be greater than or equal to {t.ge}{width}"
    if t.le is not None and value > t.le:
        return f"must be less than or equal to {t.le}{width}"
    return ""


def _literal_of(t: mi.Type) -> mi.LiteralType | None:
    """The enum `t` is, alone or as an optional (`Literal[...] | None`); None for any other type."""
    if isinstance(t, mi.UnionType):
        options = [o for o in t.types if not isinstance(o, mi.NoneType)]
        return options[0] if len(options) == 1 and isinstance(options[0], mi.LiteralType) else None
    return t if isinstance(t, mi.LiteralType) else None


def check(value: Any, t: mi.Type, path: str, causes: list[StatusCause]) -> None:
    """Append a cause for every structural problem of `value` at `path` (and below)."""
    if not _matches(value, t):
        if value is None:
            return  # null means "unset" in a manifest, as in Kubernetes
        literal = _literal_of(t)
        if literal is not None:
            supported = ", ".join(f'"{v}"' for v in literal.values if v != "")
            causes.append(
                StatusCause(
                    field=path,
                    message=f"Unsupported value: {show(value)}: supported values: {supported}",
                    reason="FieldValueNotSupported",
                )
            )
        else:
            causes.append(wrong_type(path, value, _describe(t)))
        return
    match t:
        case mi.UnionType():
            for option in t.types:
                if not isinstance(option, mi.NoneType) and _matches(value, option):
                    check(value, option, path, causes)
                    return
        case mi.ListType():
            for i, item in enumerate(value):
                check(item, t.item_type, f"{path}[{i}]", causes)
        case mi.DictType():
            for key, item in value.items():
                if not isinstance(key, str):
                    causes.append(StatusCause(field=path, message=f"key {key!r} must be a string"))
                    continue
                check(item, t.value_type, f"{path}[{key}]", causes)
        case mi.StructType():
            check_struct(value, t, path, causes)
        case mi.IntType():
            problem = _out_of_range(value, t)
            if problem:
                causes.append(
                    StatusCause(
                        field=path,
                        message=f"Invalid value: {_int_text(value)}: {problem}",
                        reason="FieldValueInvalid",
                    )
                )
        case mi.DateTimeType() if isinstance(value, str):
            try:
                msgspec.convert(value, datetime)
            except msgspec.ValidationError:
                causes.append(
                    StatusCause(field=path, message=f'Invalid value: "{value}": not an RFC 3339 time')
                )


def check_struct(
    value: dict[str, Any],
    t: mi.StructType,
    path: str,
    causes: list[StatusCause],
    *,
    skip: frozenset[str] = frozenset(),
) -> None:
    fields = {f.encode_name: f for f in t.fields}
    for key, item in value.items():
        if key in skip or key == t.tag_field:
            continue
        field = fields.get(key)
        if field is None:
            causes.append(
                StatusCause(
                    field=join(path, str(key)), message=FIELD_NOT_SUPPORTED, reason="FieldValueNotSupported"
                )
            )
            continue
        check(item, field.type, join(path, key), causes)
    for field in t.fields:
        if field.required and value.get(field.encode_name) is None:
            causes.append(
                StatusCause(
                    field=join(path, field.encode_name), message="Required value", reason="FieldValueRequired"
                )
            )


def drop_nulls(value: Any) -> Any:
    """Remove null members, which manifests use to mean "not set"."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def without_unsupported(value: Any, t: mi.Type) -> Any:
    """`value` with every unsupported field removed, so the rest can still be checked semantically."""
    match t:
        case mi.UnionType():
            for option in t.types:
                if not isinstance(option, mi.NoneType) and _matches(value, option):
                    return without_unsupported(value, option)
        case mi.ListType() if isinstance(value, list):
            return [without_unsupported(item, t.item_type) for item in value]
        case mi.DictType() if isinstance(value, dict):
            return {k: without_unsupported(v, t.value_type) for k, v in value.items()}
        case mi.StructType() if isinstance(value, dict):
            fields = {f.encode_name: f for f in t.fields}
            return {
                k: (without_unsupported(v, fields[k].type) if k in fields else v)
                for k, v in value.items()
                if k in fields or k in (t.tag_field, "apiVersion")
            }
    return value
