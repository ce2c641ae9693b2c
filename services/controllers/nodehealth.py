"""Hearing from node agents, and knowing when we cannot: the node lifecycle controller's ears.

A node is silent when we have seen neither its Lease's renewTime nor its Ready heartbeat change
for a while. Silence means something only while we could have heard: our own connection is up
and the watches of Leases and Nodes follow the store (`Informer.live`). While either is down,
every node would look silent, the same moment, for the same reason: ours. So silence is not
counted then, and when we hear again every node gets a fresh grace period, as Kubernetes gives
every node a fresh probe time when it leaves its disruption mode.

Times are our monotonic clock: an agent's clock may be skewed from ours, so we note when we saw
a stamp change, never compare the stamp with our clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from bus.connection import Link
from bus.informer import Informer

log = logging.getLogger(__name__)


class NodeHealth:
    def __init__(
        self, link: Link | None, watches: Sequence[Informer[Any]], *, clock: Callable[[], float] | None = None
    ) -> None:
        """`link`: our connection (None: one that never drops, for tests without a bus);
        `watches`: the informers whose silence would be ours (Nodes, Leases); `clock`: seconds,
        monotonic (the event loop's by default)."""
        self.link = link
        self.watches = list(watches)
        self.now = clock or _loop_time
        self._heard: dict[str, float] = {}  # node -> when we last heard from its agent
        self._beats: dict[tuple[str, str], datetime | None] = {}  # (source, node) -> last stamp
        self._hearing = False
        self._on_hearing: list[Callable[[], None]] = []
        if link is not None:
            link.on_disconnect(self._update)
            link.on_reconnect(self._reconnected)
        for watch in self.watches:
            watch.on_live(lambda _live: self._update())

    # -- whether we can hear at all

    @property
    def hearing(self) -> bool:
        """Whether silence means anything now: connected, and every watch live."""
        connected = self.link is None or self.link.connected.is_set()
        return connected and all(w.live for w in self.watches)

    def on_hearing(self, handler: Callable[[], None]) -> None:
        """`handler()` whenever we hear again after being deaf (quick, non-blocking)."""
        self._on_hearing.append(handler)

    def _reconnected(self) -> None:
        # A reconnect is a blink even if no watch noticed it: what was missed is unknown.
        self._hearing = False
        self._update()

    def _update(self) -> None:
        hearing = self.hearing
        if hearing == self._hearing:
            return
        self._hearing = hearing
        if not hearing:
            log.warning("not hearing the bus (connection or node watches down): node silence not counted")
            return
        self.fresh_grace()
        log.info("hearing the bus again: every node gets a fresh grace period")
        for handler in self._on_hearing:
            handler()

    def fresh_grace(self) -> None:
        """Count every node's silence from now."""
        moment = self.now()
        for node in self._heard:
            self._heard[node] = moment

    # -- hearing from agents (informer handlers: quick, never blocking)

    def beat(self, source: str, node: str, stamp: datetime | None) -> None:
        """The agent's stamp as seen in the `source` object (a Lease, a Node); a change is a sign
        of life."""
        key = (source, node)
        if key not in self._beats or self._beats[key] != stamp:
            self._beats[key] = stamp
            self._heard[node] = self.now()

    def forget(self, node: str) -> None:
        self._heard.pop(node, None)
        for source in ("status", "lease"):
            self._beats.pop((source, node), None)

    def silent_for(self, node: str) -> float:
        """Seconds since we last heard from the node (a node never heard counts from now);
        0 while we cannot hear."""
        moment = self.now()
        heard = self._heard.setdefault(node, moment)
        return moment - heard if self.hearing else 0.0


def _loop_time() -> float:
    return asyncio.get_running_loop().time()
