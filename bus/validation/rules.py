"""The generic checks every kind is built from: name formats, labels, selectors, ports, quantities.

Kubernetes users read validation errors in a fixed shape (`<path>: Invalid value: "Web_1": <why>`)
and search the web for the wording, so the messages here are Kubernetes' own. Each check is a
pure function that returns the causes it found (an empty list when the value is fine), so
callers simply add the lists together and report every problem of an object at once.

Format checks (`dns1123_label`, `qualified_name`, ...) return bare messages, as Kubernetes'
`util/validation` does, so that non-field callers (the selector parser) can use them too.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping

from bus.errors import StatusCause
from bus.meta import LabelSelector, LabelSelectorRequirement, ObjectMeta
from bus.quantity import parse_quantity
from bus.validation.schema import join, show

FormatCheck = Callable[[str], list[str]]

# -- causes, worded as Kubernetes' field.Error


def invalid_value(path: str, value: object, detail: str) -> StatusCause:
    return StatusCause(
        field=path, message=f"Invalid value: {show(value)}: {detail}", reason="FieldValueInvalid"
    )


def required(path: str, detail: str = "") -> StatusCause:
    message = f"Required value: {detail}" if detail else "Required value"
    return StatusCause(field=path, message=message, reason="FieldValueRequired")


def forbidden(path: str, detail: str) -> StatusCause:
    return StatusCause(field=path, message=f"Forbidden: {detail}", reason="FieldValueForbidden")


def duplicate(path: str, value: object) -> StatusCause:
    return StatusCause(field=path, message=f"Duplicate value: {show(value)}", reason="FieldValueDuplicate")


def unsupported(path: str, value: object, supported: Iterable[str]) -> StatusCause:
    choices = ", ".join(show(s) for s in supported)
    return StatusCause(
        field=path,
        message=f"Unsupported value: {show(value)}: supported values: {choices}",
        reason="FieldValueNotSupported",
    )


def too_long(path: str, limit: int) -> StatusCause:
    return StatusCause(
        field=path, message=f"Too long: must have at most {limit} bytes", reason="FieldValueTooLong"
    )


def formatted(path: str, value: str, check: FormatCheck) -> list[StatusCause]:
    """One `Invalid value` cause per message of a format check."""
    return [invalid_value(path, value, message) for message in check(value)]


# -- formats (messages only)

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_PORT_NAME_CHARS = re.compile(r"[-a-z0-9]+")

DNS1123_LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')"
)
DNS1123_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com')"
)
QUALIFIED_NAME_MESSAGE = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc')"
)
LABEL_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345')"
)
ENV_VAR_NAME_MESSAGE = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
    "and must not start with a digit (e.g. 'my.env-name', or 'MY_ENV.NAME', or 'MyEnvName1')"
)


def _max_length(value: str, limit: int) -> list[str]:
    return [f"must be no more than {limit} characters"] if len(value) > limit else []


def dns1123_label(value: str) -> list[str]:
    """Names of most objects, containers and namespaces: they end up in DNS names and subjects."""
    return _max_length(value, 63) + ([] if _DNS1123_LABEL.fullmatch(value) else [DNS1123_LABEL_MESSAGE])


def dns1123_subdomain(value: str) -> list[str]:
    return _max_length(value, 253) + (
        [] if _DNS1123_SUBDOMAIN.fullmatch(value) else [DNS1123_SUBDOMAIN_MESSAGE]
    )


def qualified_name(value: str) -> list[str]:
    """Label and annotation keys: `[prefix/]name`, the prefix a DNS subdomain (`example.com/tier`)."""
    parts = value.split("/")
    if len(parts) > 2:
        return [
            f"a qualified name {QUALIFIED_NAME_MESSAGE} with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    messages: list[str] = []
    if len(parts) == 2:
        prefix = parts[0]
        messages += (
            [f"prefix part {m}" for m in dns1123_subdomain(prefix)]
            if prefix
            else ["prefix part must be non-empty"]
        )
    name = parts[-1]
    if not name:
        return [*messages, "name part must be non-empty"]
    messages += [f"name part {m}" for m in _max_length(name, 63)]
    if not _QUALIFIED_NAME.fullmatch(name):
        messages.append(f"name part {QUALIFIED_NAME_MESSAGE}")
    return messages


def label_value(value: str) -> list[str]:
    ok = value == "" or _QUALIFIED_NAME.fullmatch(value)
    return _max_length(value, 63) + ([] if ok else [LABEL_VALUE_MESSAGE])


_KIND_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def kind_name(value: str) -> list[str]:
    """A kind as it appears in `kind` and object references: `Pod`, `HorizontalPodAutoscaler`."""
    ok = _KIND_NAME.fullmatch(value)
    return _max_length(value, 63) + (
        [] if ok else ["a kind must consist of letters and digits, starting with a letter (e.g. 'Pod')"]
    )


def no_nul(value: str) -> list[str]:
    """Strings that become process arguments, environment, paths or image references: neither
    the kernel's exec nor any runtime takes a NUL byte, so a pod holding one would never start."""
    return ["must not contain a NUL byte"] if "\x00" in value else []


_HTTP_HEADER_NAME = re.compile(r"[-A-Za-z0-9]+")
_HTTP_HEADER_VALUE_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def http_header_name(value: str) -> list[str]:
    if _HTTP_HEADER_NAME.fullmatch(value):
        return []
    return [
        "a valid HTTP header must consist of alphanumeric characters or '-' "
        "(e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')"
    ]


def http_header_value(value: str) -> list[str]:
    """A probe sends it as it is: a line break or NUL would end or corrupt the request."""
    if _HTTP_HEADER_VALUE_FORBIDDEN.search(value):
        return ["must not contain control characters (line breaks, NUL)"]
    return []


def port_name(value: str) -> list[str]:
    """IANA_SVC_NAME: how a container port is named so probes and Services can refer to it."""
    messages = _max_length(value, 15)
    if not _PORT_NAME_CHARS.fullmatch(value):
        messages.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        messages.append("must not contain consecutive hyphens")
    if not any("a" <= c <= "z" for c in value):
        messages.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        messages.append("must not begin or end with a hyphen")
    return messages


def env_var_name(value: str) -> list[str]:
    if value in (".", "..") or value.startswith(".."):
        return ["must not be '.' or '..' and must not start with '..'"]
    return [] if _ENV_VAR_NAME.fullmatch(value) else [ENV_VAR_NAME_MESSAGE]


# -- numbers, addresses and quantities


def at_least(path: str, value: int, minimum: int) -> list[StatusCause]:
    if value >= minimum:
        return []
    return [invalid_value(path, value, f"must be greater than or equal to {minimum}")]


def at_most(path: str, value: int, maximum: int) -> list[StatusCause]:
    if value <= maximum:
        return []
    return [invalid_value(path, value, f"must be less than or equal to {maximum}")]


def in_range(path: str, value: int, low: int, high: int) -> list[StatusCause]:
    if low <= value <= high:
        return []
    return [invalid_value(path, value, f"must be between {low} and {high}, inclusive")]


def port_number(path: str, value: int) -> list[StatusCause]:
    return in_range(path, value, 1, 65535)


def port_number_or_name(path: str, value: int | str) -> list[StatusCause]:
    """A port given by number, or by the name of a declared container port."""
    if isinstance(value, int):
        return port_number(path, value)
    return formatted(path, value, port_name)


def ip_address(path: str, value: str) -> list[StatusCause]:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return [invalid_value(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]
    return []


def quantity(path: str, value: str, *, positive: bool = False) -> list[StatusCause]:
    """A valid quantity, never negative (negative CPU or memory means nothing), above 0 if `positive`."""
    try:
        amount = parse_quantity(value)
    except ValueError as err:
        return [invalid_value(path, value, str(err))]
    if positive and amount <= 0:
        return [invalid_value(path, value, "must be positive")]
    if amount < 0:
        return [invalid_value(path, value, "must be greater than or equal to 0")]
    return []


# -- metadata

ANNOTATIONS_MAX_BYTES = 256 * 1024


def label_map(path: str, values: Mapping[str, str]) -> list[StatusCause]:
    causes: list[StatusCause] = []
    for key, value in values.items():
        causes += formatted(path, key, qualified_name)
        causes += formatted(f"{path}[{key}]", value, label_value)
    return causes


def annotation_map(path: str, values: Mapping[str, str]) -> list[StatusCause]:
    """Keys as label keys; values free-form, but small enough to stay cheap to store and watch."""
    causes = [cause for key in values for cause in formatted(path, key, lambda k: qualified_name(k.lower()))]
    size = sum(len(k.encode()) + len(v.encode()) for k, v in values.items())
    if size > ANNOTATIONS_MAX_BYTES:
        causes.append(too_long(path, ANNOTATIONS_MAX_BYTES))
    return causes


def _generate_name_prefix(value: str) -> str:
    """generateName gets a random suffix, so a trailing '-' is fine: check it as if it were a letter."""
    return value[:-1] + "a" if len(value) > 1 and value.endswith("-") else value


def object_meta(
    meta: ObjectMeta, path: str = "metadata", *, name_format: FormatCheck = dns1123_label
) -> list[StatusCause]:
    causes: list[StatusCause] = []
    if meta.generate_name:
        prefix = _generate_name_prefix(meta.generate_name)
        causes += [
            invalid_value(join(path, "generateName"), meta.generate_name, m) for m in name_format(prefix)
        ]
    if meta.name:
        causes += formatted(join(path, "name"), meta.name, name_format)
    elif not meta.generate_name:
        causes.append(required(join(path, "name"), "name or generateName is required"))
    if meta.namespace:
        causes += formatted(join(path, "namespace"), meta.namespace, dns1123_label)
    causes += label_map(join(path, "labels"), meta.labels)
    causes += annotation_map(join(path, "annotations"), meta.annotations)
    return causes


# -- selectors


def selector_requirement(path: str, req: LabelSelectorRequirement) -> list[StatusCause]:
    """One matchExpressions entry: a valid key, and values exactly when the operator takes them."""
    causes = formatted(join(path, "key"), req.key, qualified_name)
    values_path = join(path, "values")
    if req.operator in ("In", "NotIn") and not req.values:
        causes.append(required(values_path, "must be specified when `operator` is 'In' or 'NotIn'"))
    if req.operator in ("Exists", "DoesNotExist") and req.values:
        causes.append(
            forbidden(values_path, "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
        )
    for i, value in enumerate(req.values):
        causes += formatted(f"{values_path}[{i}]", value, label_value)
    return causes


def label_selector(path: str, selector: LabelSelector) -> list[StatusCause]:
    causes = label_map(join(path, "matchLabels"), selector.match_labels)
    for i, req in enumerate(selector.match_expressions):
        causes += selector_requirement(f"{join(path, 'matchExpressions')}[{i}]", req)
    return causes
