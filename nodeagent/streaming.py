"""Serving `steer logs` and `steer exec` on the node's own subjects (bus/streams.py has the protocol).

A logs request gets its own task: it finds the pod's container, then sends the output as `data`
messages to the requester's inbox. A following stream ends when the container exits, when the
requester cancels, or when it stops sending keepalives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from bus import subjects
from bus.codec import encode
from bus.errors import BadRequest, NotFound, SteerError
from bus.protocol import ERROR_CODE_HEADER, ERROR_HEADER
from bus.streams import CONTROL_HEADER, KEEPALIVE_TIMEOUT, STREAM_HEADER, ExecReply, ExecRequest, LogsRequest
from nodeagent.runtime import Runtime, RuntimeFailure
from nodeagent.worker import PodWorker

log = logging.getLogger(__name__)

MAX_CHUNK = 64 * 1024

Finder = Callable[[str, str], PodWorker | None]


class StreamServer:
    def __init__(self, nc: NATS, node: str, find: Finder, runtime: Runtime, tasks: asyncio.TaskGroup) -> None:
        self.nc = nc
        self.node = node
        self.find = find
        self.runtime = runtime
        self.tasks = tasks

    async def start(self) -> None:
        await self.nc.subscribe(subjects.node_stream(self.node, "logs"), cb=self._on_logs)
        await self.nc.subscribe(subjects.node_stream(self.node, "exec"), cb=self._on_exec)

    def _container(self, namespace: str, pod: str, container: str, *, previous: bool = False) -> str:
        worker = self.find(namespace, pod)
        if worker is None:
            raise NotFound(f'pod "{pod}" is not running on node {self.node}')
        return worker.container_id(container, previous=previous)

    # -- logs

    async def _on_logs(self, msg: Msg) -> None:
        if msg.reply:
            self.tasks.create_task(self._logs(msg))

    async def _logs(self, msg: Msg) -> None:
        try:
            request = msgspec.json.decode(msg.data, type=LogsRequest)
        except msgspec.DecodeError as err:
            await _fail(self.nc, msg.reply, BadRequest(f"malformed logs request: {err}"))
            return
        try:
            container_id = self._container(
                request.namespace, request.pod, request.container, previous=request.previous
            )
        except SteerError as err:
            await _fail(self.nc, msg.reply, err)
            return
        since = (
            datetime.now(UTC) - timedelta(seconds=request.since_seconds) if request.since_seconds else None
        )
        control = self.nc.new_inbox()
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
        except RuntimeFailure as err:
            await _fail(self.nc, msg.reply, NotFound(err.message))
        finally:
            with contextlib.suppress(Exception):
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
        if msg.reply:
            self.tasks.create_task(self._exec(msg))

    async def _exec(self, msg: Msg) -> None:
        try:
            request = msgspec.json.decode(msg.data, type=ExecRequest)
            if not request.command:
                raise BadRequest("exec needs a command")
            container_id = self._container(request.namespace, request.pod, request.container)
        except msgspec.DecodeError as err:
            await _fail(self.nc, msg.reply, BadRequest(f"malformed exec request: {err}"))
            return
        except SteerError as err:
            await _fail(self.nc, msg.reply, err)
            return
        try:
            async with asyncio.timeout(request.timeout_seconds):
                result = await self.runtime.exec(container_id, request.command)
        except TimeoutError:
            await _fail(
                self.nc, msg.reply, BadRequest(f"command did not finish within {request.timeout_seconds:g}s")
            )
            return
        except RuntimeFailure as err:
            await _fail(self.nc, msg.reply, BadRequest(err.message))
            return
        await self.nc.publish(msg.reply, encode(ExecReply(exit_code=result.exit_code, output=result.output)))


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


async def _fail(nc: NATS, reply: str, err: SteerError) -> None:
    headers = {STREAM_HEADER: "error", ERROR_CODE_HEADER: str(err.code), ERROR_HEADER: err.message[:200]}
    with contextlib.suppress(Exception):
        await nc.publish(reply, msgspec.json.encode(err.to_status()), headers=headers)
