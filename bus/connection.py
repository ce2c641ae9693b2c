"""Connecting to NATS, and announcing and discovering components as NATS micro services.

Every component registers a micro service (`steer-api`, `steer-scheduler`, ...), so standard NATS
tooling (`nats micro ls`) and `steer status` can list, ping and read the stats of each live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.micro import add_service
from nats.micro.service import Service

from bus import subjects
from bus.errors import Unavailable

log = logging.getLogger(__name__)

DEFAULT_URL = "nats://127.0.0.1:4222"
VERSION = "0.1.0"


@dataclass(frozen=True)
class Credentials:
    """How to authenticate: a .creds file, a user/password pair, or a token (all optional)."""

    creds_file: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None


class Link:
    """What the users of one connection learn of its state.

    nats-py takes one callback per connection event; a process has many users of its connection
    (every watch, the node agent's feeds, the node lifecycle controller), so the connection's
    callbacks are fanned out here. `generation` counts reconnects: a watch that saw generation N
    and finds N+1 knows its server-side consumer may be gone.
    """

    def __init__(self) -> None:
        self.generation = 0
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self._on_reconnect: list[Callable[[], None]] = []
        self._on_disconnect: list[Callable[[], None]] = []

    def on_reconnect(self, handler: Callable[[], None]) -> None:
        """`handler()` after every reconnect; it must be quick (set a flag, wake a task)."""
        self._on_reconnect.append(handler)

    def on_disconnect(self, handler: Callable[[], None]) -> None:
        self._on_disconnect.append(handler)

    def _tell(self, handlers: list[Callable[[], None]]) -> None:
        for handler in handlers:
            try:
                handler()
            except Exception:  # one user's bug must not stop the others hearing of it
                log.exception("connection state handler failed")

    def reconnected(self) -> None:
        self.generation += 1
        self.connected.set()
        self._tell(self._on_reconnect)

    def disconnected(self) -> None:
        self.connected.clear()
        self._tell(self._on_disconnect)


_links: weakref.WeakKeyDictionary[NATS, Link] = weakref.WeakKeyDictionary()


def link(nc: NATS) -> Link:
    """The state of connection `nc` (one made elsewhere gets a Link that never changes)."""
    found = _links.get(nc)
    if found is None:
        found = _links[nc] = Link()
        if nc.is_connected:
            found.connected.set()
    return found


async def connect(
    servers: str | list[str] = DEFAULT_URL,
    *,
    name: str,
    credentials: Credentials | None = None,
    connect_timeout: float = 5.0,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
) -> NATS:
    """A connection that reconnects forever once established; a clear error if none can be made."""
    urls = [s.strip() for s in servers.split(",")] if isinstance(servers, str) else servers
    creds = credentials or Credentials()
    options: dict[str, Any] = {
        "servers": urls,
        "name": name,
        "connect_timeout": connect_timeout,
        "allow_reconnect": True,
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.5,
        "user_credentials": creds.creds_file,
        "user": creds.user,
        "password": creds.password,
        "token": creds.token,
    }
    nc = NATS()
    state = _links[nc] = Link()

    async def on_reconnected() -> None:
        state.reconnected()
        if on_reconnect is not None:
            await on_reconnect()

    async def on_disconnected() -> None:
        state.disconnected()

    async def on_closed() -> None:
        state.connected.clear()
        state.closed.set()

    async def on_error(err: Exception) -> None:
        log.debug("nats: %s", err)

    options.update(
        reconnected_cb=on_reconnected,
        disconnected_cb=on_disconnected,
        closed_cb=on_closed,
        error_cb=on_error,
    )
    try:
        # The first connection must succeed within the timeout; nats-py would otherwise retry forever.
        await asyncio.wait_for(nc.connect(**options), timeout=connect_timeout + 1.0)
    except (TimeoutError, OSError, nats.errors.Error) as err:
        raise Unavailable(
            f"cannot connect to NATS at {', '.join(urls)}: {str(err) or type(err).__name__}"
        ) from None
    state.connected.set()
    return nc


async def close(nc: NATS, *, drain_for: float = 5.0) -> None:
    """Drain the connection (in-flight messages are finished), but never wait longer than
    `drain_for`: a shutdown must not hang on a peer that stopped reading."""
    try:
        async with asyncio.timeout(drain_for):
            await nc.drain()
    except (TimeoutError, nats.errors.Error) as err:
        log.debug("drain did not finish (%s); closing", err or "timeout")
    if not nc.is_closed:
        with contextlib.suppress(nats.errors.Error):
            await nc.close()


async def announce(
    nc: NATS, component: str, *, description: str, metadata: dict[str, str] | None = None
) -> Service:
    """Register `component` as a NATS micro service (ping, info and stats answer from now on)."""
    return await add_service(
        nc,
        name=subjects.service_name(component),
        version=VERSION,
        description=description,
        metadata=metadata or {},
    )


@dataclass(frozen=True)
class ComponentInfo:
    name: str
    id: str
    version: str
    started: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    endpoints: list[dict[str, Any]] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(int(e.get("num_requests", 0)) for e in self.endpoints)

    @property
    def errors(self) -> int:
        return sum(int(e.get("num_errors", 0)) for e in self.endpoints)


async def discover(nc: NATS, *, wait: float = 0.5) -> list[ComponentInfo]:
    """Every live steersman component, from the replies to a micro-service STATS broadcast."""
    found: list[ComponentInfo] = []
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish("$SRV.STATS", b"", reply=inbox)
        async for info in _replies(sub, wait):
            name = str(info.get("name", ""))
            if not name.startswith(subjects.service_name("")):
                continue
            found.append(
                ComponentInfo(
                    name=name,
                    id=str(info.get("id", "")),
                    version=str(info.get("version", "")),
                    started=str(info.get("started", "")),
                    metadata=dict(info.get("metadata") or {}),
                    endpoints=list(info.get("endpoints") or []),
                )
            )
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
    return sorted(found, key=lambda c: (c.name, c.metadata.get("instance", ""), c.id))


async def _replies(sub: Any, wait: float) -> AsyncIterator[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while (remaining := deadline - loop.time()) > 0:
        try:
            msg = await sub.next_msg(timeout=remaining)
        except nats.errors.TimeoutError:
            return
        try:
            yield json.loads(msg.data)
        except ValueError:
            continue
