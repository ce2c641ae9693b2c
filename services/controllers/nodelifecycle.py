"""The node lifecycle controller: notices dead nodes, taints them, and evicts their pods.

Kubernetes' node lifecycle controller, taint manager and pod GC in one reconciler, keyed by node
name:

- **Failure detection** (`nodehealth`). A node agent renews its Lease (`steer-node-lease/<node>`)
  every few seconds and posts its status (with a Ready condition) now and then. When we have
  heard neither for `grace` seconds, the node's conditions become Unknown (NodeStatusUnknown).
  Silence counts only while we hear the bus ourselves (our connection, and the Node and Lease
  watches, are live); when we hear again, every node gets a fresh grace period. A bus outage
  is our blindness, not the nodes' death.
- **Health taints.** Ready=False gives `node.kubernetes.io/not-ready`, Ready=Unknown
  `node.kubernetes.io/unreachable`, at once as NoSchedule, and as NoExecute once the node is
  released for eviction; Ready=True removes them. Only the agent sets Ready back to True.
- **Disruption** (`nodedisruption`, `disruption`). Every `monitor_period` seconds a sweep judges
  each zone: nodes are released for eviction at the zone's rate (0.1 node/s), more slowly or
  not at all when a large share of a zone is unhealthy, never when no zone has a ready node.
- **Eviction.** Pods bound to a node with NoExecute taints are deleted (gracefully) when they
  do not tolerate one, or when their tolerationSeconds run out (`nodetaints.eviction_delay`).
  An evicted pod on a dead node stays Terminating: only its agent can finish it, when it comes
  back (it stops the containers first). It no longer counts as a replica, so it is replaced.
- **Pod GC.** Pods bound to a node that no longer exists are deleted at once (grace period 0),
  as nothing will ever stop them.

The cost of counting silence on our clock: after the controllers start (or a new leader takes
over, or the bus comes back), a node that was already dead is noticed one grace period later.
Taint timeAdded is our wall clock, and tolerationSeconds count from it.

Rather than polling, each reconcile asks to be run again when the node would go silent or the
next toleration would run out (`Result(requeue_after=...)`); Lease renewals of a healthy node
do not wake the controller at all.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

import msgspec

from bus.client import Client
from bus.codec import to_builtins
from bus.connection import Link, link
from bus.controller import Controller, Result, all_of
from bus.errors import Conflict, NotFound
from bus.events import now
from bus.informer import Change, Informer
from bus.meta import Resource
from bus.recorder import Recorder
from bus.resources import Lease, Node, Pod
from bus.resources.cluster import Taint
from services.controllers import nodetaints
from services.controllers.disruption import EvictionLimits
from services.controllers.nodedisruption import DisruptionSweep
from services.controllers.nodehealth import NodeHealth

log = logging.getLogger(__name__)

COMPONENT = "node-controller"
# Kubernetes waits 40 s and tolerates 300 s; ours are short so that the pods of a dead node run
# elsewhere within 30 s (docs/controllers.md).
DEFAULT_GRACE = 10.0
DEFAULT_TOLERATION_SECONDS = 5
# At least the agents' Lease renewal interval (3 s): nodes that fell silent together are seen
# together before the first of them is evicted.
DEFAULT_SETTLE = 3.0
MONITOR_PERIOD = 1.0  # seconds between two sweeps of every zone (Kubernetes: 5)
REQUEUE_MARGIN = 0.05  # wake a little after the deadline, not a little before it


def lease_keys(nodes: Informer[Node]) -> Callable[[Resource], list[str]]:
    """A renewal matters at once only to a node we hold unhealthy (it may be back)."""

    def keys(obj: Resource) -> list[str]:
        node = nodes.get(obj.metadata.name)
        if node is None:
            return []
        healthy = nodetaints.ready_status(node.status.conditions) == "True" and not any(
            nodetaints.is_managed(t) for t in node.spec.taints
        )
        return [] if healthy else [obj.metadata.name]

    return keys


def pod_node_keys(obj: Resource) -> list[str]:
    assert isinstance(obj, Pod)
    return [obj.spec.node_name] if obj.spec.node_name else []


class NodeLifecycleReconciler:
    def __init__(
        self,
        client: Client,
        nodes: Informer[Node],
        leases: Informer[Lease],
        pods: Informer[Pod],
        *,
        grace: float = DEFAULT_GRACE,
        default_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS,
        settle: float = DEFAULT_SETTLE,
        limits: EvictionLimits | None = None,
        connection: Link | None = None,
    ) -> None:
        """`connection`: the Link of `client`'s connection (None: one that never drops)."""
        self.client = client
        self.nodes = nodes
        self.pods = pods
        self.grace = grace
        self.default_toleration_seconds = default_toleration_seconds
        self.recorder = Recorder(client, component=COMPONENT)
        self.health = NodeHealth(connection, [nodes, leases])
        self.disruption = DisruptionSweep(
            self.health, self.recorder, grace=grace, settle=settle, limits=limits or EvictionLimits()
        )
        self._all_again = False  # every node to be reconciled: we hear again after being deaf
        self._taint_seen: dict[tuple[str, str, str], datetime] = {}  # for taints without timeAdded
        self._evicted: set[str] = set()  # pod uids we deleted, so each eviction is recorded once
        self.health.on_hearing(self._hear_again)
        nodes.on_change(self._node_changed)
        leases.on_change(self._lease_changed)
        pods.on_change(self._pod_changed)

    # -- hearing from agents (informer handlers: quick, never blocking)

    def _node_changed(self, change: Change, old: Node | None, new: Node | None) -> None:
        if new is None:
            if old is not None:
                self._forget(old.metadata.name)
            return
        ready = next((c for c in new.status.conditions if c.type == "Ready"), None)
        self.health.beat("status", new.metadata.name, ready.last_heartbeat_time if ready else None)

    def _lease_changed(self, change: Change, old: Lease | None, new: Lease | None) -> None:
        if new is not None:
            self.health.beat("lease", new.metadata.name, new.spec.renew_time)

    def _pod_changed(self, change: Change, old: Pod | None, new: Pod | None) -> None:
        if new is None and old is not None:
            self._evicted.discard(old.metadata.uid)

    def _hear_again(self) -> None:
        self._all_again = True

    def _forget(self, node: str) -> None:
        self.health.forget(node)
        self.disruption.forget(node)
        for key in [k for k in self._taint_seen if k[0] == node]:
            del self._taint_seen[key]

    # -- every zone at once

    async def sweep(self) -> list[str]:
        """The periodic look at every zone; the nodes to reconcile now."""
        wake = await self.disruption.sweep(self.nodes.items())
        if self._all_again and self.health.hearing:
            self._all_again = False
            wake |= {node.metadata.name for node in self.nodes.items()}
        return sorted(wake)

    # -- reconciling

    async def reconcile(self, name: str) -> Result:
        if not self.health.hearing:
            return Result()  # nothing judged on what may be stale: all is looked at again then
        node = self.nodes.get(name)
        if node is None:
            await self._collect_orphans(name)
            return Result()
        silent_for = self.health.silent_for(name)
        if silent_for > self.grace:
            node = await self._mark_unknown(node)
        ready = nodetaints.ready_status(node.status.conditions)
        key = nodetaints.health_taint(ready)
        if key is None:
            self.disruption.forget(name)
        elif self._already_evicting(node, key):
            self.disruption.released.add(name)  # released before (by an earlier leader): so it stays
        node = await self._set_health_taints(node, key, evicting=name in self.disruption.released)
        if ready == "Unknown":
            await self._mark_pods_not_ready(node)
        wakes = [self.grace - silent_for] if silent_for <= self.grace else []
        next_eviction = await self._evict(node)
        if next_eviction is not None:
            wakes.append(next_eviction)
        return Result(requeue_after=min(wakes) + REQUEUE_MARGIN) if wakes else Result()

    def _already_evicting(self, node: Node, key: str) -> bool:
        if self.disruption.zones.everywhere_disrupted:
            return False
        return any(t.key == key and t.effect == "NoExecute" for t in node.spec.taints)

    async def _mark_unknown(self, node: Node) -> Node:
        if any(c.type == "Ready" and c.status == "Unknown" for c in node.status.conditions):
            return node
        status = msgspec.structs.replace(
            node.status, conditions=nodetaints.unknown_conditions(node.status.conditions, now())
        )
        # Compare-and-set on the version we judged: an agent that posted meanwhile wins.
        stored = await self.client.update_status(Node(metadata=node.metadata, spec=node.spec, status=status))
        log.info("node %s: no heartbeat for %.0fs; status Unknown", node.metadata.name, self.grace)
        return stored

    async def _set_health_taints(self, node: Node, key: str | None, *, evicting: bool) -> Node:
        taints = nodetaints.with_health_taints(node.spec.taints, key, evicting=evicting, at=now())
        if taints == node.spec.taints:
            return node
        had_one = any(nodetaints.is_managed(t) for t in node.spec.taints)
        patch = {
            "metadata": {"resourceVersion": node.metadata.resource_version},
            "spec": {"taints": [to_builtins(t) for t in taints] or None},
        }
        stored = await self.client.patch(Node, node.metadata.name, patch, "")
        name = node.metadata.name
        if key is None:
            log.info("node %s: Ready again; health taints removed", name)
        else:
            log.info("node %s: tainted %s:%s", name, key, "NoExecute" if evicting else "NoSchedule")
        if key is not None and not had_one:
            message = f"Node {node.metadata.name} status is now: NodeNotReady"
            await self.recorder.normal(stored, "NodeNotReady", message)
        return stored

    async def _mark_pods_not_ready(self, node: Node) -> None:
        """A silent node's pods are not Ready, whatever they last said: the endpoints and the
        proxies stop sending them traffic before the pods are evicted. (Kubernetes does this for
        Ready=False too; a steersman agent that reports its node not ready reports its pods
        itself.)"""
        moment = now()
        for pod in self.pods.items():
            if pod.spec.node_name != node.metadata.name:
                continue
            conditions = nodetaints.pod_not_ready(pod.status.conditions, moment)
            if conditions is None:
                continue
            status = msgspec.structs.replace(pod.status, conditions=conditions)
            try:  # compare-and-set: a status the agent posted meanwhile wins
                await self.client.update_status(Pod(metadata=pod.metadata, spec=pod.spec, status=status))
            except (Conflict, NotFound):
                continue
            await self.recorder.warning(pod, "NodeNotReady", "Node is not ready")

    def _added(self, node: str, taint: Taint, at: datetime) -> datetime:
        """When a taint was added: its timeAdded, or when we first saw it."""
        if taint.time_added is not None:
            return taint.time_added
        return self._taint_seen.setdefault((node, taint.key, taint.effect), at)

    async def _evict(self, node: Node) -> float | None:
        """Delete the pods the node's NoExecute taints evict now; seconds until the next one."""
        name, moment = node.metadata.name, now()
        taints = [(t, self._added(name, t, moment)) for t in node.spec.taints if t.effect == "NoExecute"]
        if not taints:
            return None
        due: list[Pod] = []
        later: list[float] = []
        for pod in self.pods.items():
            if pod.spec.node_name != name or pod.metadata.deletion_timestamp is not None:
                continue
            delay = nodetaints.eviction_delay(
                pod.spec.tolerations, taints, default_seconds=self.default_toleration_seconds, now=moment
            )
            if delay == 0:
                due.append(pod)
            elif delay is not None:
                later.append(delay)
        await all_of([self._evict_pod(pod) for pod in due])
        return min(later) if later else None

    async def _evict_pod(self, pod: Pod) -> None:
        if pod.metadata.uid in self._evicted:
            return  # deleted already; the cache has not caught up
        try:
            await self.client.delete(Pod, pod.metadata.name, pod.metadata.namespace)
        except NotFound:
            return  # gone already: nothing to evict
        self._evicted.add(pod.metadata.uid)
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        log.info("evicting pod %s from node %s", key, pod.spec.node_name)
        await self.recorder.normal(pod, "TaintManagerEviction", f"Marking for deletion Pod {key}")

    async def _collect_orphans(self, name: str) -> None:
        """Force-delete the pods bound to a node that is gone (Kubernetes' pod GC)."""
        orphans = [p for p in self.pods.items() if p.spec.node_name == name]
        if not orphans:
            self._forget(name)
            return
        if await self.client.exists(Node, name, ""):
            return  # our cache is behind (a pod seen before its new node)
        for pod in orphans:  # nothing will ever stop these pods
            namespace, pod_name = pod.metadata.namespace, pod.metadata.name
            log.info("deleting pod %s/%s of deleted node %s", namespace, pod_name, name)
            with contextlib.suppress(NotFound):
                await self.client.delete(Pod, pod_name, namespace, grace_period_seconds=0)


def node_lifecycle_controller(
    client: Client,
    nodes: Informer[Node],
    leases: Informer[Lease],
    pods: Informer[Pod],
    *,
    grace: float = DEFAULT_GRACE,
    default_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS,
    settle: float = DEFAULT_SETTLE,
    limits: EvictionLimits | None = None,
    monitor_period: float = MONITOR_PERIOD,
    workers: int = 1,
) -> Controller:
    """The controller, wired to its informers (`leases`: those of `steer-node-lease`) and to the
    state of `client`'s connection."""
    reconciler = NodeLifecycleReconciler(
        client,
        nodes,
        leases,
        pods,
        grace=grace,
        default_toleration_seconds=default_toleration_seconds,
        settle=settle,
        limits=limits,
        connection=link(client.nc),
    )
    controller = Controller("nodelifecycle", reconciler, workers=workers)
    controller.watch(nodes)
    controller.watch(leases, lease_keys(nodes))
    controller.watch(pods, pod_node_keys)
    controller.periodic(monitor_period, reconciler.sweep)
    return controller
