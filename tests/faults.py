"""Faults for integration tests: a bus that blinks, and one client cut off from a bus that does not.

Everything here is real: a real nats-server process, real TCP. Two tools:

- `outage(server, down_for)` and `down(server)`: the whole bus goes away. The real nats-server is
  killed with SIGKILL (a crash; `how="stop"` for SIGTERM, a clean stop), stays down, and starts
  again on the same port with the same store (`NatsServer.kill()`/`stop()` and `start_again()`).
  Every client of that server lives through the same outage. Use a server of the test's own
  (`natsserver.start(tmp_path / "nats")`, or `tests.cluster.ControlPlane`): the session's shared
  server serves every other test.

      await outage(server, 3.0)              # down for 3 s, then up again
      async with down(server):               # down while the block runs
          ...

- `Relay`: a TCP relay on loopback in front of a nats-server. Point one client at `relay.url`
  and the others at the server itself; `relay.cut()` then drops the links the relay carries (with
  a reset, as a dying peer does) and stops listening until it is restored, while the other
  clients go on working: writers keep writing while one watcher is away. `relay.send(data)`
  speaks to the relayed clients as the server would, e.g. an `-ERR` after which nats-py closes the
  connection for good.

      async with Relay(nats_url) as relay:
          nc = await connect(relay.url, name="watcher")
          async with relay.cut():            # the watcher is away in here
              await client.create(...)       # through a direct connection
          await relay.cut_for(3.0)           # or away for 3 s

And for what follows a fault, around a service process: `wait_for_line(log, text)` (a log line
appeared), `wait_for_exit(proc)` (its exit code), `free_port()` (a port to start a server on
later, for a service started before its bus).

A fault's duration is the one fixed sleep a test may have; everything after it waits for a
condition (tests/waiting.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from bus.natsserver import NatsServer

ERR_MAX_CONTROL_LINE = b"-ERR 'Maximum Control Line Exceeded'\r\n"


@contextlib.asynccontextmanager
async def down(server: NatsServer, *, how: Literal["kill", "stop"] = "kill") -> AsyncIterator[None]:
    """The server is down inside the block, and up again (same port, same store) after it."""
    await asyncio.to_thread(server.kill if how == "kill" else server.stop)
    try:
        yield
    finally:
        await asyncio.to_thread(server.start_again)


async def outage(server: NatsServer, down_for: float, *, how: Literal["kill", "stop"] = "kill") -> None:
    """Take the server down for `down_for` seconds, then start it again."""
    async with down(server, how=how):
        await asyncio.sleep(down_for)


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter

    def abort(self) -> None:
        for writer in (self.client, self.server):
            writer.transport.abort()


@dataclass(eq=False)
class Relay:
    """A loopback TCP relay to the nats-server at `upstream` (a nats:// URL)."""

    upstream: str
    host: str = "127.0.0.1"
    _server: asyncio.Server | None = None
    _port: int = 0
    _links: set[_Link] = field(default_factory=set)
    _cut: bool = False
    connections: int = 0  # links accepted and relayed so far

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cut = True
        self._abort_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._port, "use the relay in `async with`"
        return f"nats://{self.host}:{self._port}"

    @property
    def carrying(self) -> int:
        """How many links the relay carries right now."""
        return len(self._links)

    @contextlib.asynccontextmanager
    async def cut(self) -> AsyncIterator[None]:
        """Relayed clients are cut off inside the block (their links reset, new connections
        refused, as by a server that is down), and may reconnect after it."""
        assert self._server is not None, "use the relay in `async with`"
        self._cut = True
        self._server.close()
        self._abort_all()
        await self._server.wait_closed()
        try:
            yield
        finally:
            self._cut = False
            self._server = await asyncio.start_server(self._serve, self.host, self._port)

    async def cut_for(self, seconds: float) -> None:
        async with self.cut():
            await asyncio.sleep(seconds)

    async def send(self, data: bytes, *, then_close: bool = True) -> None:
        """Send `data` to every relayed client as if the server had, and (as the server does
        after an -ERR) close their links."""
        for link in list(self._links):
            link.client.write(data)
            with contextlib.suppress(ConnectionError):
                await link.client.drain()
            if then_close:
                link.abort()

    def _abort_all(self) -> None:
        for link in list(self._links):
            link.abort()
        self._links.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        target = urlparse(self.upstream)
        try:
            up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)
        except OSError:
            writer.transport.abort()  # the server itself is down: so is the relay
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        self.connections += 1
        try:
            async with asyncio.TaskGroup() as pumps:
                pumps.create_task(_pump(reader, up_writer))
                pumps.create_task(_pump(up_reader, writer))
        finally:
            self._links.discard(link)
            link.abort()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until either side goes; then close the other, as a proxy would."""
    with contextlib.suppress(ConnectionError):
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    sink.transport.abort()


async def wait_for_line(path: Path, text: str, *, within: float = 30.0) -> str:
    """The first line of a log file that contains `text` (the file is read as it grows)."""
    try:
        async with asyncio.timeout(within):
            while True:
                if (line := await asyncio.to_thread(_find, path, text)) is not None:
                    return line
                await asyncio.sleep(0.05)  # a file has no watch to wait on; polling it is the condition
    except TimeoutError:
        shown = (await asyncio.to_thread(_tail, path))[-3000:]
        raise AssertionError(f"{path.name} never said {text!r}; it ends with:\n{shown}") from None


def _find(path: Path, text: str) -> str | None:
    return next((line for line in _tail(path).splitlines() if text in line), None)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


async def wait_for_exit(proc: subprocess.Popen[bytes], *, within: float = 30.0) -> int:
    """The exit code of a process that is expected to end by itself."""
    try:
        return await asyncio.to_thread(proc.wait, within)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"process {proc.pid} is still running after {within:g}s") from None


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for a server started later)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
