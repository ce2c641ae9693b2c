"""Checks of what a request names rather than carries: the object a get, patch or delete looks
up, the namespace and node its subject names, the resourceVersion it expects.

These values come straight off the bus and end up in store keys and subjects, so the API checks
them before it touches the store. A lookup is lenient in what it accepts (any name a stored key
can hold, up to 253 characters, the longest name any kind has), so a name that no object could
have is simply not found, as in Kubernetes; the namespace and node tokens follow the rules of
their kinds (DNS-1123 labels).
"""

from __future__ import annotations

import re

from bus.errors import BadRequest, StatusCause
from bus.validation.rules import dns1123_label, invalid_value, required

MAX_NAME_LENGTH = 253
INT64_MAX = 2**63 - 1

# The characters of a KV key, tokens joined by single dots (Event names are `<object>.<hex>`).
_LOOKUP_NAME = re.compile(r"[-/_=A-Za-z0-9]+(\.[-/_=A-Za-z0-9]+)*")
LOOKUP_NAME_MESSAGE = (
    "a name may hold only letters, digits, '-', '_', '/', '=' and single dots inside "
    "(every valid name is a lowercase RFC 1123 subdomain, e.g. 'web-1')"
)


def lookup_name(name: str, path: str = "name") -> list[StatusCause]:
    if not name:
        return [required(path)]
    if len(name) > MAX_NAME_LENGTH:
        return [invalid_value(path, name, f"must be no more than {MAX_NAME_LENGTH} characters")]
    if not _LOOKUP_NAME.fullmatch(name):
        return [invalid_value(path, name, LOOKUP_NAME_MESSAGE)]
    return []


def namespace_token(namespace: str) -> list[StatusCause]:
    """The namespace a subject names ("" for cluster scope)."""
    if not namespace:
        return []
    return [invalid_value("namespace", namespace, m) for m in dns1123_label(namespace)]


def node_token(node: str) -> list[StatusCause]:
    """The node a node-scoped subject names: its Node's name."""
    return [invalid_value("node", node, m) for m in dns1123_label(node)]


def resource_version(value: str, path: str = "resourceVersion") -> list[StatusCause]:
    """A precondition: empty (none) or the decimal revision a client read."""
    if not value:
        return []
    if len(value) > 19 or not value.isascii() or not value.isdigit() or int(value) > INT64_MAX:
        return [invalid_value(path, value, "must be a resourceVersion returned by the server")]
    return []


def check(message: str, causes: list[StatusCause]) -> None:
    """BadRequest with every cause, if there is any."""
    if causes:
        raise BadRequest(message, causes=causes)
