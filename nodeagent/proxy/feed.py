"""Every Service and Endpoints a node agent knows, kept current from the API's feed and listings.

One `ServiceFeed` per agent serves every consumer: the userspace proxy and the nftables rules
of the pod network read the same two `Mirror`s. A consumer `watch()`es: it gets an event that
is set after every change (and after every listing, so that what failed to apply is tried
again), and re-reads the mirrors when it wakes: level-based, so a burst of changes is one wake.
`listed` is set once the first listing is in: a consumer that programs something from scratch
waits for it, or it would briefly serve an empty cluster after a restart.

`ServiceCache` is the state alone, for consumers' tests; `ServiceFeed` fills it from NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from bus import subjects
from bus.client import Client
from bus.connection import subscribe_checked
from bus.protocol import FEED_EVENT_HEADER
from bus.resources import Endpoints, Service
from nodeagent.proxy.mirror import Mirror
from nodeagent.resync import resync_loop

log = logging.getLogger(__name__)


class ServiceCache:
    def __init__(self) -> None:
        self.services: Mirror[Service] = Mirror()
        self.endpoints: Mirror[Endpoints] = Mirror()
        self.listed = asyncio.Event()
        self._watchers: list[asyncio.Event] = []

    def watch(self) -> asyncio.Event:
        """An event set at every change from now on (set already: start by reading)."""
        event = asyncio.Event()
        event.set()
        self._watchers.append(event)
        return event

    def changed(self) -> None:
        for event in self._watchers:
            event.set()


class ServiceFeed(ServiceCache):
    def __init__(
        self,
        nc: NATS,
        client: Client,
        *,
        resync_interval: float = 30.0,
        resync_now: asyncio.Event | None = None,
    ) -> None:
        super().__init__()
        self.nc = nc
        self.client = client
        self.resync_interval = resync_interval
        self.resync_now = resync_now or asyncio.Event()  # set it to re-list (after a reconnect)
        self._decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {
            Service: msgspec.json.Decoder(Service),
            Endpoints: msgspec.json.Decoder(Endpoints),
        }

    async def run(self) -> None:
        """Follow the feed and list now and then, until cancelled."""
        feeds = [
            await subscribe_checked(
                self.nc, subjects.cluster_feed("services"), cb=self._feed(Service, self.services)
            ),
            await subscribe_checked(
                self.nc, subjects.cluster_feed("endpoints"), cb=self._feed(Endpoints, self.endpoints)
            ),
        ]
        self.resync_now.set()
        try:
            await resync_loop(
                self.resync, self.resync_interval, self.resync_now, "service proxy: listing Services"
            )
        finally:
            for sub in feeds:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()

    def _feed(self, cls: type[Any], mirror: Mirror[Any]) -> Any:
        return mirror_feed(self._decoders[cls], mirror, self.changed, f"service proxy: {cls.__name__}")

    async def resync(self) -> None:
        """List every Service and Endpoints."""
        marks = self.services.mark(), self.endpoints.mark()
        services = await self.client.list(Service, subjects.ALL)
        endpoints = await self.client.list(Endpoints, subjects.ALL)
        self.services.replace(services, marks[0])
        self.endpoints.replace(endpoints, marks[1])
        self.listed.set()
        self.changed()  # even if nothing changed: what could not be applied may be now


def mirror_feed(
    decoder: msgspec.json.Decoder[Any], mirror: Mirror[Any], changed: Callable[[], None], what: str
) -> Callable[[Msg], Awaitable[None]]:
    """A subscription callback that keeps `mirror` in step with a feed and calls `changed`
    after each change. What anyone may publish there is checked: a malformed message is
    logged and ignored, never an end of the feed."""

    async def on_message(msg: Msg) -> None:
        try:
            obj = decoder.decode(msg.data)
        except msgspec.DecodeError as err:
            log.warning("%s: malformed message on the feed (%s); ignored", what, err)
            return
        deleted = (msg.headers or {}).get(FEED_EVENT_HEADER) == "DELETED"
        try:
            if mirror.delete(obj) if deleted else mirror.put(obj):
                changed()
        except Exception:
            log.exception("%s: cannot take a message from the feed", what)

    return on_message
