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


class FeedFollower:
    """Objects kept from the API's feeds (core NATS) and from listings, now and then and at once
    when `resync_now` is set (after a reconnect). Subclasses say which feeds and how to list."""

    what = "listing"  # for the log line of a failed listing

    def __init__(
        self,
        nc: NATS,
        client: Client,
        *,
        resync_interval: float = 30.0,
        resync_now: asyncio.Event | None = None,
    ) -> None:
        super().__init__()  # the cache's state (the next class in a subclass's order)
        self.nc = nc
        self.client = client
        self.resync_interval = resync_interval
        self.resync_now = resync_now or asyncio.Event()

    def feeds(self) -> list[tuple[str, Callable[[Msg], Awaitable[None]]]]:
        """(subject, callback) of each feed followed."""
        raise NotImplementedError

    async def resync(self) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        """Follow the feeds and list now and then, until cancelled."""
        subscriptions = [await subscribe_checked(self.nc, subject, cb=cb) for subject, cb in self.feeds()]
        self.resync_now.set()
        try:
            await resync_loop(self.resync, self.resync_interval, self.resync_now, self.what)
        finally:
            for sub in subscriptions:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()


class ServiceFeed(FeedFollower, ServiceCache):
    what = "service proxy: listing Services"

    def feeds(self) -> list[tuple[str, Callable[[Msg], Awaitable[None]]]]:
        return [
            (subjects.cluster_feed("services"), self._feed(Service, self.services)),
            (subjects.cluster_feed("endpoints"), self._feed(Endpoints, self.endpoints)),
        ]

    def _feed(self, cls: type[Any], mirror: Mirror[Any]) -> Callable[[Msg], Awaitable[None]]:
        decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(cls)
        return mirror_feed(decoder, mirror, self.changed, f"service proxy: {cls.__name__}")

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
