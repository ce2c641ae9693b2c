"""Every pod of the cluster as the network sees it (bus/podview.py), for the NetworkPolicy enforcer.

A node's credential reads in full only the pods bound to it; of every pod it may get the network
view, from the API's feed (`steer.feed.pods`, core NATS: a message can be lost or come late) and
from listings (`view: network`), now and then and at once after a reconnect. The two agree in
any order as the service proxy's feed does (nodeagent/proxy/mirror.py). It is a `Source` of
the enforcer: `synced` once the first listing is in, `items()`, and `on_change` handlers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from nats.aio.msg import Msg

from bus import subjects
from bus.podview import NETWORK_VIEW
from bus.resources import Pod
from nodeagent.proxy.feed import FeedFollower, mirror_feed
from nodeagent.proxy.mirror import Mirror


class PodAddressCache:
    """The state alone: a `Source` of the enforcer."""

    def __init__(self) -> None:
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


class PodAddresses(FeedFollower, PodAddressCache):
    what = "listing the pods' addresses"

    def feeds(self) -> list[tuple[str, Callable[[Msg], Awaitable[None]]]]:
        on_message = mirror_feed(msgspec.json.Decoder(Pod), self.pods, self.changed, "pods' addresses")
        return [(subjects.cluster_feed("pods"), on_message)]

    async def resync(self) -> None:
        mark = self.pods.mark()
        listed = await self.client.list(Pod, subjects.ALL, view=NETWORK_VIEW)
        if self.pods.replace(listed, mark) or not self.synced.is_set():
            self.changed()
        self.synced.set()
