"""Every pod of the cluster as the network sees it (bus/podview.py), for the NetworkPolicy enforcer.

A node's credential reads in full only the pods bound to it; of every pod it may get the network
view, from the API's feed (`steer.feed.pods`, core NATS: a message can be lost or come late) and
from listings (`view: network`), now and then and at once after a reconnect. The two agree in
any order as the service proxy's feed does (nodeagent/proxy/mirror.py). It is a `Source` of
the enforcer: `synced` once the first listing is in, `items()`, and `on_change` handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NATS

from bus import subjects
from bus.client import Client
from bus.connection import subscribe_checked
from bus.podview import NETWORK_VIEW
from bus.resources import Pod
from nodeagent.proxy.feed import mirror_feed
from nodeagent.proxy.mirror import Mirror
from nodeagent.resync import resync_loop


class PodAddresses:
    def __init__(
        self,
        nc: NATS,
        client: Client,
        *,
        resync_interval: float = 30.0,
        resync_now: asyncio.Event | None = None,
    ) -> None:
        self.nc = nc
        self.client = client
        self.resync_interval = resync_interval
        self.resync_now = resync_now or asyncio.Event()  # set it to list now (after a reconnect)
        self.pods: Mirror[Pod] = Mirror()
        self.synced = asyncio.Event()
        self._handlers: list[Callable[[Any, Any, Any], None]] = []

    def items(self) -> Sequence[Pod]:
        return list(self.pods.objects.values())

    def on_change(self, handler: Callable[[Any, Any, Any], None]) -> None:
        self._handlers.append(handler)

    def changed(self) -> None:
        for handler in self._handlers:
            handler(None, None, None)

    async def run(self) -> None:
        """Follow the feed and list now and then, until cancelled."""
        on_message = mirror_feed(msgspec.json.Decoder(Pod), self.pods, self.changed, "network policy: pods")
        feed = await subscribe_checked(self.nc, subjects.cluster_feed("pods"), cb=on_message)
        self.resync_now.set()
        try:
            await resync_loop(
                self.resync, self.resync_interval, self.resync_now, "network policy: listing pods"
            )
        finally:
            with contextlib.suppress(nats.errors.Error):
                await feed.unsubscribe()

    async def resync(self) -> None:
        mark = self.pods.mark()
        listed = await self.client.list(Pod, subjects.ALL, view=NETWORK_VIEW)
        if self.pods.replace(listed, mark) or not self.synced.is_set():
            self.changed()
        self.synced.set()
