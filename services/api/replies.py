"""Answering a request, whatever happens: a reply that cannot be sent is never dropped silently.

The client of a request that gets no answer waits for its whole timeout and learns nothing, so a
reply that fails (too large for the server's max_payload, a connection that is reconnecting) is
logged and replaced by a short error reply where one can still go out. Error replies carry the
NATS micro-service error headers; their text is cut down to what a header can hold safely.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import nats.errors
from nats.micro.request import Request

from bus import subjects
from bus.codec import encode
from bus.errors import Internal, Status, StatusCause, SteerError, TooLarge
from bus.protocol import ERROR_CODE_HEADER, ERROR_HEADER
from services.api.bodies import REPLY_HEADROOM

log = logging.getLogger(__name__)

HEADER_TEXT_MAX = 200
# An error reply is small whatever caused it, so it fits even a 1 MiB max_payload.
ERROR_BODY_MAX = 256 * 1024
TEXT_MAX = 4096


async def reply(
    request: Request, value: Any, *, max_payload: int, headers: dict[str, str] | None = None
) -> bool:
    """Send `value` as the reply (with `headers`, e.g. a warning); on failure, say why in an error
    reply. Whether `value` went out."""
    try:
        data = encode(value)
    except (TypeError, ValueError, msgspec.EncodeError) as err:
        log.exception("cannot encode the reply on %s", request.subject)
        await reply_error(request, Internal(f"internal error: cannot encode the reply: {type(err).__name__}"))
        return False
    limit = max_payload - REPLY_HEADROOM
    if len(data) > limit:
        log.error("reply on %s is %d bytes, over the %d the server takes", request.subject, len(data), limit)
        await reply_error(
            request, TooLarge(f"the reply would be {len(data)} bytes; the server takes {limit}")
        )
        return False
    if await _send(request, data, headers):
        return True
    await reply_error(request, Internal("internal error: the reply could not be sent"))
    return False


async def reply_error(request: Request, err: SteerError) -> None:
    headers = {ERROR_CODE_HEADER: str(err.code), ERROR_HEADER: header_text(err.message)}
    await _send(request, msgspec.json.encode(bounded(err.to_status())), headers)


def bounded(status: Status) -> Status:
    """`status` cut down to ERROR_BODY_MAX bytes at most: long texts shortened, and causes past
    that size summed up in a last one. (Values in messages are already shown short; this is the
    backstop for an object with ten thousand bad labels.)"""
    status.message = _short(status.message)
    if status.details is None:
        return status
    kept: list[StatusCause] = []
    size = len(status.message)
    causes = status.details.causes
    for index, cause in enumerate(causes):
        cause = StatusCause(field=_short(cause.field), message=_short(cause.message), reason=cause.reason)
        size += len(cause.field) + len(cause.message) + 64
        if size > ERROR_BODY_MAX:
            kept.append(StatusCause(message=f"... and {len(causes) - index} more causes"))
            break
        kept.append(cause)
    status.details.causes = kept
    return status


def _short(text: str) -> str:
    return text if len(text) <= TEXT_MAX else f"{text[:TEXT_MAX]}... ({len(text)} characters)"


def header_text(text: str, limit: int = HEADER_TEXT_MAX) -> str:
    """`text` as a header value: printable ASCII on one line, at most `limit` characters."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in text[:limit])
    return printable.strip() or "error"


async def _send(request: Request, data: bytes, headers: dict[str, str] | None) -> bool:
    reply_to = request._msg.reply  # micro's Request has no public accessor for it
    if reply_to and not subjects.is_inbox(reply_to):
        # The server lets a responder publish to any reply subject it receives: a client naming
        # `steer.node.n1.feed.pods` as its reply subject would have us feed node n1 a pod.
        log.warning(
            "request on %s asks for its reply on %s, not an inbox; not answered", request.subject, reply_to
        )
        return False
    try:
        await request.respond(data, headers=headers)
    except ValueError:  # published without a reply subject: nobody is waiting for an answer
        log.debug("request on %s has no reply subject; nothing to answer", request.subject)
        return False
    except (nats.errors.Error, OSError) as err:
        log.warning("could not reply on %s: %s", request.subject, type(err).__name__)
        return False
    return True
