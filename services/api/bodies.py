"""Reading request bodies, and keeping what is stored small enough to be served.

Every request body is bounded before it is parsed, and every object is bounded before it is
written: the limit is the API's object size (1 MiB, as Kubernetes keeps objects under etcd's
1.5 MiB) or less when the server's max_payload is smaller, so that every stored object fits in
a reply, whatever was merged into it (a spec from one request, a status from another).
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from bus.codec import encode
from bus.errors import BadRequest, TooLarge
from bus.meta import Resource
from bus.protocol import MAX_OBJECT_BYTES

T = TypeVar("T")

# Room left in a reply for the headers and the envelope around an object or a page.
REPLY_HEADROOM = 16 * 1024


def object_limit(max_payload: int) -> int:
    """The largest object (or request body) the API accepts with a server of this max_payload."""
    return max(1024, min(MAX_OBJECT_BYTES, max_payload - REPLY_HEADROOM))


def parse_json(body: bytes, *, limit: int = MAX_OBJECT_BYTES) -> Any:
    return _decode(body, None, limit)


def parse_request(body: bytes, type_: type[T], *, limit: int = MAX_OBJECT_BYTES) -> T:
    return _decode(body, type_, limit)


def _decode(body: bytes, type_: type | None, limit: int) -> Any:
    if len(body) > limit:
        raise TooLarge(f"request entity too large: {len(body)} bytes; the limit is {limit} bytes")
    try:
        return msgspec.json.decode(body) if type_ is None else msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as err:
        raise BadRequest(f"malformed {type_.__name__ if type_ else 'request'}: {err}") from None
    except msgspec.DecodeError as err:
        raise BadRequest(f"request body is not valid JSON: {err}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None


def check_size(obj: Resource, limit: int) -> None:
    """TooLarge if `obj`, as it would be stored, is over `limit` bytes."""
    size = len(encode(obj))
    if size > limit:
        raise TooLarge(
            f'{obj.kind} "{obj.metadata.name}" would be {size} bytes once written; the limit is {limit} bytes'
        )
