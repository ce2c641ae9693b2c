"""Lists served in pages, as Kubernetes serves them with `limit` and `continue`.

A reply cannot be larger than the server's max_payload (4 MiB with our nats.conf, 1 MiB in a
default NATS deployment), so a list of any size goes out in pages: at most `limit` items when
the client asks for a limit, and never more bytes than one reply carries. A page that is not the
last carries a `continue` token naming the last object it holds; the next page starts after it.

JetStream KV keeps no snapshot to serve later pages from, so each page is read afresh: an object
changed meanwhile shows its new state, one created or deleted meanwhile may or may not appear,
and none appears twice (pages move forward in key order). Every page reports the first page's
resourceVersion, so a watch started from it misses nothing (at worst it repeats a change).
"""

from __future__ import annotations

import base64
import bisect
import logging
from dataclasses import dataclass

import msgspec

from bus.errors import BadRequest
from bus.meta import Resource
from bus.validation.rules import invalid_value

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 2048
_BAD_TOKEN = "not a continue token this server issued (list again from the start)"


class Cursor(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Where a page ended: the last object's namespace and name, and the list's resourceVersion."""

    rv: str
    ns: str
    name: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.ns, self.name)


def encode_token(cursor: Cursor) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(cursor)).decode().rstrip("=")


def decode_token(token: str) -> Cursor:
    """The cursor a `continue` token stands for; BadRequest naming `continue` if it is not one."""
    try:
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise ValueError(token)
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return msgspec.json.decode(raw, type=Cursor)
    except (ValueError, msgspec.DecodeError):
        raise BadRequest(
            "invalid list request", causes=[invalid_value("continue", token, _BAD_TOKEN)]
        ) from None


@dataclass
class Page:
    items: list[msgspec.Raw]
    last: tuple[str, str] | None  # set when more items follow
    remaining: int


def paginate(items: list[Resource], *, after: Cursor | None, limit: int, budget: int) -> Page:
    """The page of `items` (sorted by namespace and name) that follows `after`: at most `limit`
    items (0: no count limit), at most `budget` bytes of them."""
    keys = [(item.metadata.namespace, item.metadata.name) for item in items]
    start = bisect.bisect_right(keys, after.key) if after is not None else 0
    page: list[msgspec.Raw] = []
    size = 0
    index = start
    while index < len(items) and (not limit or len(page) < limit):
        data = msgspec.json.encode(items[index])
        if len(data) + 1 > budget:
            log.error(
                "%s %s/%s is %d bytes, more than a reply can carry: left out of the list",
                items[index].kind,
                keys[index][0],
                keys[index][1],
                len(data),
            )
            index += 1
            continue
        if size + len(data) + 1 > budget:
            break
        page.append(msgspec.Raw(data))
        size += len(data) + 1
        index += 1
    if index >= len(items):
        return Page(page, None, 0)
    return Page(page, keys[index - 1], len(items) - index)
