"""Serving `steer logs` and `steer exec` on the node's own subjects (bus/streams.py has the protocol).

A logs request gets its own task: it finds the pod's container, then sends the output as `data`
messages to the requester's inbox. A following stream ends when the container exits, when the
requester cancels, or when it stops sending keepalives.

Anyone who may publish on the node's subjects can send anything, so each request runs inside an
exception boundary (`_answer`): its fields are bounded first (requestlimits.py), and whatever
it raises is logged and answered as an error (a Status, as every error on the bus), never passed
up to the agent. At most MAX_REQUESTS run at once; more are answered Unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from bus import subjects
from bus.codec import encode
from bus.connection import subscribe_checked
from bus.errors import BadRequest, Internal, NotFound, SteerError, TooLarge, Unavailable
from bus.protocol import ERROR_CODE_HEADER, ERROR_HEADER
from bus.streams import CONTROL_HEADER, KEEPALIVE_TIMEOUT, STREAM_HEADER, ExecReply, ExecRequest, LogsRequest
from nodeagent.requestlimits import check_exec, check_logs, since_time
from nodeagent.runtime import Runtime, RuntimeFailure
from nodeagent.worker import PodWorker

log = logging.getLogger(__name__)

MAX_CHUNK = 64 * 1024
MAX_REQUESTS = 256  # logs streams and execs served at once

Finder = Callable[[str, str], PodWorker | None]


class StreamServer:
    def __init__(self, nc: NATS, node: str, find: Finder, runtime: Runtime, tasks: asyncio.TaskGroup) -> None:
        self.nc = nc
        self.node = node
        self.find = find
        self.runtime = runtime
        self.tasks = tasks
        self.serving = 0

    async def start(self) -> None:
        # Checked: an agent whose credential may not serve them must say so, not sit deaf.
        await subscribe_checked(self.nc, subjects.node_stream_listen(self.node, "logs"), cb=self._on_logs)
        await subscribe_checked(self.nc, subjects.node_stream_listen(self.node, "exec"), cb=self._on_exec)

    def _check_namespace(self, msg: Msg, namespace: str) -> None:
        """The pod's namespace is a token of the subject, so that NATS permissions can confine a
        user to its namespaces: the body must not name another one."""
        _, _, token = subjects.parse_node_stream(msg.subject)
        if namespace != token:
            raise BadRequest(
                f'the request is about namespace "{namespace}" but was sent on the subject of '
                f'namespace "{token}"'
            )

    def _container(self, namespace: str, pod: str, container: str, *, previous: bool = False) -> str:
        worker = self.find(namespace, pod)
        if worker is None:
            raise NotFound(f'pod "{pod}" is not running on node {self.node}')
        return worker.container_id(container, previous=previous)

    # -- the boundary

    def _serve(self, msg: Msg, handler: Callable[[Msg], Awaitable[None]], what: str) -> None:
        if not msg.reply or not subjects.is_inbox(msg.reply):
            # Nobody to answer; or a reply subject that is no inbox, named to have this node
            # publish there (the server lets a responder publish to any reply subject).
            return
        if self.serving >= MAX_REQUESTS:
            busy = Unavailable(f"node {self.node} serves {MAX_REQUESTS} logs and exec requests already")
            self.tasks.create_task(_fail(self.nc, msg.reply, busy))
            return
        self.serving += 1
        self.tasks.create_task(self._answer(msg, handler, what))

    async def _answer(self, msg: Msg, handler: Callable[[Msg], Awaitable[None]], what: str) -> None:
        """Serve one request; whatever goes wrong is answered, never raised."""
        try:
            await handler(msg)
        except SteerError as err:
            await _fail(self.nc, msg.reply, err)
        except Exception:
            log.exception("%s on %s failed", what, msg.subject)
            await _fail(
                self.nc, msg.reply, Internal(f"node {self.node} failed to serve the {what}; see its log")
            )
        finally:
            self.serving -= 1

    # -- logs

    async def _on_logs(self, msg: Msg) -> None:
        self._serve(msg, self._logs, "logs request")

    async def _logs(self, msg: Msg) -> None:
        try:
            request = msgspec.json.decode(msg.data, type=LogsRequest)
        except msgspec.DecodeError as err:
            raise BadRequest(f"malformed logs request: {err}") from None
        check_logs(request)
        self._check_namespace(msg, request.namespace)
        container_id = self._container(
            request.namespace, request.pod, request.container, previous=request.previous
        )
        since = since_time(request.since_seconds)
        # On the node's own subjects: whoever may ask this node for logs may also keep the
        # stream alive, without any right on the node's inbox.
        control = subjects.node_control(self.node, self.nc.new_inbox().rsplit(".", 1)[-1])
        cancelled = asyncio.Event()
        heard = asyncio.Event()

        async def on_control(ctl: Msg) -> None:
            if ctl.data == b"cancel":
                cancelled.set()
            heard.set()

        sub = await self.nc.subscribe(control, cb=on_control)
        try:
            await self.nc.publish(msg.reply, b"", headers={STREAM_HEADER: "open", CONTROL_HEADER: control})
            async with asyncio.TaskGroup() as group:
                copier = group.create_task(self._copy(msg.reply, container_id, request, since))
                if request.follow:
                    watchdog = group.create_task(_watchdog(heard, cancelled))
                    await asyncio.wait([copier, watchdog], return_when=asyncio.FIRST_COMPLETED)
                    for task in (copier, watchdog):
                        task.cancel()
            await self.nc.publish(msg.reply, b"", headers={STREAM_HEADER: "end"})
        except* RuntimeFailure as group:
            raise NotFound("; ".join(err.message for err in _failures(group))) from None
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def _copy(
        self, reply: str, container_id: str, request: LogsRequest, since: datetime | None
    ) -> None:
        async for chunk in self.runtime.logs(
            container_id, follow=request.follow, tail=request.tail, since=since
        ):
            for start in range(0, len(chunk), MAX_CHUNK):
                await self.nc.publish(
                    reply, chunk[start : start + MAX_CHUNK], headers={STREAM_HEADER: "data"}
                )

    # -- exec

    async def _on_exec(self, msg: Msg) -> None:
        self._serve(msg, self._exec, "exec request")

    async def _exec(self, msg: Msg) -> None:
        try:
            request = msgspec.json.decode(msg.data, type=ExecRequest)
        except msgspec.DecodeError as err:
            raise BadRequest(f"malformed exec request: {err}") from None
        check_exec(request)
        self._check_namespace(msg, request.namespace)
        container_id = self._container(request.namespace, request.pod, request.container)
        try:
            async with asyncio.timeout(request.timeout_seconds):
                result = await self.runtime.exec(container_id, request.command)
        except TimeoutError:
            raise BadRequest(f"command did not finish within {request.timeout_seconds:g}s") from None
        except RuntimeFailure as err:
            raise BadRequest(err.message) from None
        reply = encode(ExecReply(exit_code=result.exit_code, output=result.output))
        if len(reply) > self.nc.max_payload:
            raise TooLarge(
                f"the command's output ({len(result.output)} bytes) is more than one message holds "
                f"({self.nc.max_payload} bytes); use steer logs, or write less"
            )
        await self.nc.publish(msg.reply, reply)


async def _watchdog(heard: asyncio.Event, cancelled: asyncio.Event) -> None:
    """Return when the requester cancels, or has been silent for KEEPALIVE_TIMEOUT."""
    while not cancelled.is_set():
        heard.clear()
        try:
            async with asyncio.timeout(KEEPALIVE_TIMEOUT):
                await heard.wait()
        except TimeoutError:
            log.info("log stream requester went silent; ending the stream")
            return


def _failures(group: BaseExceptionGroup[RuntimeFailure]) -> list[RuntimeFailure]:
    found: list[RuntimeFailure] = []
    for err in group.exceptions:
        found += _failures(err) if isinstance(err, BaseExceptionGroup) else [err]
    return found


async def _fail(nc: NATS, reply: str, err: SteerError) -> None:
    """Answer with the error; a requester that is gone (or a bus that is) is nobody to tell."""
    headers = {STREAM_HEADER: "error", ERROR_CODE_HEADER: str(err.code), ERROR_HEADER: err.message[:200]}
    try:
        await nc.publish(reply, msgspec.json.encode(err.to_status()), headers=headers)
    except (nats.errors.Error, OSError) as failed:
        log.debug("cannot answer on %s: %s", reply, failed)
