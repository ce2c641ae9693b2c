"""Connecting to NATS, and announcing and discovering components as NATS micro services.

Every component registers a micro service (`steer-api`, `steer-scheduler`, ...), so standard NATS
tooling (`nats micro ls`) and `steer status` can list, ping and read the stats of each live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
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
    if on_reconnect is not None:
        options["reconnected_cb"] = on_reconnect

    async def on_error(err: Exception) -> None:
        log.debug("nats: %s", err)

    try:
        # The first connection must succeed within the timeout; nats-py would otherwise retry forever.
        return await asyncio.wait_for(
            nats.connect(**options, error_cb=on_error),
            timeout=connect_timeout + 1.0,
        )
    except (TimeoutError, OSError, nats.errors.Error) as err:
        raise Unavailable(
            f"cannot connect to NATS at {', '.join(urls)}: {str(err) or type(err).__name__}"
        ) from None


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
