"""Logs and exec: request bodies and the chunked reply stream a node agent sends.

`steer logs` sends a LogsRequest to `steer.node.<node>.logs` with a reply inbox. The agent answers
with a sequence of messages on that inbox: first an (empty) `open` naming a control subject, then
`data` chunks, then `end` (or `error` with a message). While following, the client publishes
`keepalive` to the control subject every few seconds and `cancel` when it stops; an agent that
hears nothing for a while ends the stream, so a client that died never leaves a stream behind.
"""

from __future__ import annotations

from typing import Literal

import msgspec

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
