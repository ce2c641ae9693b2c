"""When the pods of unhealthy nodes may begin to be evicted: the node lifecycle controller's
periodic look at every zone at once (Kubernetes' monitorNodeHealth and its zone rate limiters).

Every sweep counts each zone's ready and not ready nodes (`disruption`), says so when a zone's
evictions stop or resume (a log line and an event on each of its unhealthy nodes), and releases
unhealthy nodes for eviction, oldest first, at the zone's rate. A node is released only once it
has been unhealthy for `settle` seconds while its zone was heard: agents renew on their own
schedules, so nodes that fell silent together cross the grace period up to a renewal interval
apart, and the first of them must not be evicted before the others are seen gone too.

Releasing a node is what puts its NoExecute taint on (the reconcile does). When every zone is
fully disrupted, every release is withdrawn (their NoExecute taints go, as Kubernetes'
markNodeAsReachable), and when that ends every node gets a fresh grace period.
"""

from __future__ import annotations

import logging

from bus.recorder import Recorder
from bus.resources import Node
from services.controllers import nodetaints
from services.controllers.disruption import EvictionLimits, ZoneChange, Zones, zone_of
from services.controllers.nodehealth import NodeHealth

log = logging.getLogger(__name__)


class DisruptionSweep:
    def __init__(
        self, health: NodeHealth, recorder: Recorder, *, grace: float, settle: float, limits: EvictionLimits
    ) -> None:
        self.health = health
        self.recorder = recorder
        self.grace = grace
        self.settle = settle
        self.zones = Zones(limits)
        self.released: set[str] = set()  # nodes whose evictions may run (their NoExecute taint)
        self._unhealthy_since: dict[str, float] = {}  # node -> when a sweep first found it so

    def unhealthy(self, node: Node) -> bool:
        """Not ready: silent beyond the grace period, or not reporting Ready=True."""
        silent = self.health.silent_for(node.metadata.name) > self.grace
        return silent or nodetaints.ready_status(node.status.conditions) != "True"

    def forget(self, name: str) -> None:
        self.released.discard(name)
        self._unhealthy_since.pop(name, None)

    async def sweep(self, nodes: list[Node]) -> set[str]:
        """Judge every zone; the nodes to reconcile now (their eviction taint changes)."""
        if not self.health.hearing:
            return set()  # stale counts would judge our own deafness
        now = self.health.now()
        counts: dict[str, tuple[int, int]] = {}
        waiting: list[tuple[float, str, str]] = []  # (unhealthy since, node, zone)
        for node in nodes:
            name, zone = node.metadata.name, zone_of(node.metadata.labels)
            ready, not_ready = counts.get(zone, (0, 0))
            if self.unhealthy(node):
                counts[zone] = (ready, not_ready + 1)
                waiting.append((self._unhealthy_since.setdefault(name, now), name, zone))
            else:
                counts[zone] = (ready + 1, not_ready)
                self.forget(name)
        was_everywhere = self.zones.everywhere_disrupted
        changes = self.zones.update(counts)
        wake: set[str] = set()
        if self.zones.everywhere_disrupted and not was_everywhere:
            wake |= self.released  # their NoExecute taints go: nothing is evicted now
            self.released.clear()
        elif was_everywhere and not self.zones.everywhere_disrupted:
            self.health.fresh_grace()
        if changes:
            await self._report(changes, {name for _, name, _ in waiting}, nodes)
        for since, name, zone in sorted(waiting):
            if name not in self.released and now - since >= self.settle and self.zones.take(zone, now):
                self.released.add(name)
                wake.add(name)
        return wake

    async def _report(self, changes: list[ZoneChange], unhealthy: set[str], nodes: list[Node]) -> None:
        everywhere = self.zones.everywhere_disrupted
        for change in changes:
            where = f"zone {change.zone!r}" if change.zone else "the cluster"
            counted = f"{change.not_ready} of {change.size} nodes of {where} not ready ({change.state})"
            stopped = change.rate == 0 and change.rate_before != 0
            resumed = change.rate > 0 and change.rate_before == 0
            if stopped:
                why = "no zone has a ready node" if everywhere else "too many at once"
                message = f"{counted}: {why}; pods are not evicted until most nodes are heard again"
                log.warning("%s", message)
                reason, warning = "EvictionSuspended", True
            elif resumed:
                message = f"{counted}: pods of unhealthy nodes are evicted again, at {change.rate:g} node/s"
                log.info("%s", message)
                reason, warning = "EvictionResumed", False
            else:
                log.info("%s: evictions begin at %g node/s", counted, change.rate)
                continue
            for node in nodes:
                if node.metadata.name in unhealthy and zone_of(node.metadata.labels) == change.zone:
                    if warning:
                        await self.recorder.warning(node, reason, message)
                    else:
                        await self.recorder.normal(node, reason, message)
