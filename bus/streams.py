"""Logs and exec: request bodies and the chunked reply stream a node agent sends.

`steer logs` sends a LogsRequest to `steer.node.<node>.logs.<namespace>` with a reply inbox. The agent answers
with a sequence of messages on that inbox: first an (empty) `open` naming a control subject, then
`data` chunks, then `end` (or `error` with a message). While following, the client publishes
`keepalive` to the control subject every few seconds and `cancel` when it stops; an agent that
hears nothing for a while ends the stream, so a client that died never leaves a stream behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Literal

import msgspec
import nats.errors
from nats.aio.client import Client as NATS

from bus import subjects
from bus.codec import encode
from bus.errors import Internal, Status, SteerError, Timeout, Unavailable, from_status

STREAM_HEADER = "Steer-Stream"  # open | data | end | error
CONTROL_HEADER = "Steer-Control"  # on `open`: where to send keepalive/cancel
KEEPALIVE_INTERVAL = 5.0
KEEPALIVE_TIMEOUT = 20.0

StreamKind = Literal["open", "data", "end", "error"]


class LogsRequest(
    msgspec.Struct, omit_defaults=True, rename="camel", kw_only=True, forbid_unknown_fields=True
):
    namespace: str
    pod: str
    container: str = ""
    follow: bool = False
    tail: int | None = None
    since_seconds: float | None = None
    previous: bool = False


class ExecRequest(
    msgspec.Struct, omit_defaults=True, rename="camel", kw_only=True, forbid_unknown_fields=True
):
    namespace: str
    pod: str
    command: list[str]
    container: str = ""
    timeout_seconds: float = 60.0


class ExecReply(msgspec.Struct, rename="camel", kw_only=True):
    exit_code: int
    output: bytes = b""


async def read_logs(
    nc: NATS, node: str, request: LogsRequest, *, answer_within: float = 10.0
) -> AsyncIterator[bytes]:
    """The log chunks a node agent streams for `request`; raises the agent's error, if any.

    While following, waiting for output doubles as the keepalive timer: every quiet
    KEEPALIVE_INTERVAL the agent is told we are still here.
    """
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    control = ""
    try:
        await nc.publish(subjects.node_stream(node, "logs", request.namespace), encode(request), reply=inbox)
        while True:
            following = bool(control) and request.follow
            try:
                msg = await sub.next_msg(timeout=KEEPALIVE_INTERVAL if following else answer_within)
            except nats.errors.TimeoutError:
                if not following:
                    raise Timeout(f"node {node} did not answer within {answer_within:g}s") from None
                await nc.publish(control, b"keepalive")
                continue
            match (msg.headers or {}).get(STREAM_HEADER):
                case "open":
                    control = (msg.headers or {}).get(CONTROL_HEADER, "")
                case "data":
                    yield msg.data
                case "error":
                    raise _error(msg.data)
                case _:
                    return
    finally:
        if control:
            with contextlib.suppress(Exception):
                await nc.publish(control, b"cancel")
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def run_exec(nc: NATS, node: str, request: ExecRequest) -> ExecReply:
    try:
        msg = await nc.request(
            subjects.node_stream(node, "exec", request.namespace),
            encode(request),
            timeout=request.timeout_seconds + 5.0,
        )
    except nats.errors.NoRespondersError:
        raise Unavailable(f"node {node} does not answer (is its agent running?)") from None
    except nats.errors.TimeoutError:
        raise Timeout(f"node {node} did not answer") from None
    if (msg.headers or {}).get(STREAM_HEADER) == "error":
        raise _error(msg.data)
    return msgspec.json.decode(msg.data, type=ExecReply)


def _error(data: bytes) -> SteerError:
    try:
        return from_status(msgspec.json.decode(data, type=Status))
    except msgspec.DecodeError:
        return Internal("malformed error from node agent")
