"""The node IPAM controller: every Node gets a pod CIDR of its own, carved from the cluster CIDR
(Kubernetes' `--allocate-node-cidrs` with the range allocator).

Keyed by the Node's name and level-based. The reconcile of a Node without `spec.podCIDR` works
out which subnets are held from the informer's Nodes (so a controller that starts again, or a
new leader, knows every allocation before it makes one: controllers reconcile only once their
informers synced), and gives the Node the lowest free one (`cidrs.py`) by a compare-and-set
patch of the Node (on its resourceVersion); a Conflict re-reads it once, and a Node that has a
CIDR by then is left so.

- A deleted Node's subnet is free again as soon as the informer drops it.
- Allocations this controller wrote that its informer has not shown yet are held apart
  (`_pending`), so that two Nodes reconciled in quick succession never get the same subnet;
  the reconciles run one at a time for the same reason.
- A Node whose podCIDR lies outside the cluster CIDR keeps it; a warning is logged (once).
- When no subnet is left, the Node gets a Warning event `CIDRNotAvailable` (once until it is
  allocated) and waits: any Node that gives up a subnet, or changes, reconciles the waiting ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from ipaddress import IPv4Network

from bus.client import Client
from bus.controller import Controller, Result
from bus.errors import Conflict, NotFound
from bus.informer import Informer, key_of
from bus.meta import Resource
from bus.recorder import Recorder
from bus.resources import Node
from services.controllers import cidrs
from services.controllers.cidrs import CIDRsExhausted, NodeCIDRs

log = logging.getLogger(__name__)

COMPONENT = "node-ipam-controller"
CIDR_NOT_AVAILABLE = "CIDRNotAvailable"
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_NODE_MASK = 24


def held_by(node: Node) -> str:
    """The pod CIDR a Node holds: podCIDR, or the first of podCIDRs when only those are written
    (Kubernetes reads the two as one); empty when it has none."""
    return node.spec.pod_cidr or next(iter(node.spec.pod_cidrs), "")


class NodeIpamReconciler:
    def __init__(self, client: Client, nodes: Informer[Node], carved: NodeCIDRs) -> None:
        self.client = client
        self.nodes = nodes
        self.carved = carved
        self.recorder = Recorder(client, component=COMPONENT)
        self._pending: dict[str, tuple[str, IPv4Network]] = {}  # node -> (uid, CIDR) written, unseen
        self._exhausted: set[str] = set()  # nodes told CIDRNotAvailable
        self._outside: set[str] = set()  # nodes whose foreign CIDR was logged

    async def reconcile(self, key: str) -> Result:
        node = self.nodes.get(key)
        if node is None:
            self._forget(key)
            return Result()
        if held_by(node):
            self._exhausted.discard(key)
            self._check_inside(node)
            return Result()
        if node.metadata.deletion_timestamp is not None:
            return Result()
        if key in self._pending and self._pending[key][0] == node.metadata.uid:
            return Result()  # given one already; the informer has not shown it yet
        try:
            cidr = self.carved.lowest_free(self.occupied())
        except CIDRsExhausted as err:
            if key not in self._exhausted:
                log.warning("node %s: %s", key, err)
                await self.recorder.warning(node, CIDR_NOT_AVAILABLE, f"no pod CIDR for node {key}: {err}")
                self._exhausted.add(key)
            return Result()
        await self._assign(node, cidr)
        return Result()

    def occupied(self) -> list[IPv4Network]:
        """Every subnet a Node holds: from the informer, and those written but not yet seen."""
        held: list[IPv4Network] = []
        for node in self.nodes.items():
            cidr = cidrs.parse(held_by(node)) if held_by(node) else None
            if cidr is not None:
                held.append(cidr)
        for name, (uid, cidr) in list(self._pending.items()):
            seen = self.nodes.get(name)
            if seen is None or seen.metadata.uid != uid or held_by(seen):
                del self._pending[name]  # gone (its subnet is free), or the informer counts it now
            else:
                held.append(cidr)
        return held

    async def _assign(self, node: Node, cidr: IPv4Network) -> None:
        name = node.metadata.name
        try:
            stored = await self._write(node, cidr)
        except Conflict:  # the cache was behind: once more from a live read
            try:
                live = await self.client.get(Node, name, "")
            except NotFound:
                return
            if held_by(live):
                return  # allocated meanwhile; its change reconciles again
            stored = await self._write(live, cidr)
        except NotFound:
            return
        self._pending[name] = (stored.metadata.uid, cidr)
        self._exhausted.discard(name)
        log.info("node %s: pod CIDR %s", name, cidr)

    async def _write(self, node: Node, cidr: IPv4Network) -> Node:
        """A merge patch on the version read (compare-and-set: a stale one is a Conflict)."""
        patch = {
            "metadata": {"resourceVersion": node.metadata.resource_version},
            "spec": {"podCIDR": str(cidr), "podCIDRs": [str(cidr)]},
        }
        return await self.client.patch(Node, node.metadata.name, patch, "")

    def _check_inside(self, node: Node) -> None:
        name = node.metadata.name
        cidr = cidrs.parse(held_by(node))
        if cidr is not None and self.carved.contains(cidr):
            self._outside.discard(name)
        elif name not in self._outside:
            self._outside.add(name)
            log.warning(
                "node %s has pod CIDR %s, outside the cluster CIDR %s: left as it is",
                name,
                held_by(node),
                self.carved.cluster,
            )

    def _forget(self, name: str) -> None:
        self._pending.pop(name, None)
        self._exhausted.discard(name)
        self._outside.discard(name)


def waiting_keys(nodes: Informer[Node]) -> Callable[[Resource], list[str]]:
    """Map a Node to itself and, when it holds a subnet (and may be giving it up), to every Node
    still waiting for one."""

    def keys(obj: Resource) -> list[str]:
        assert isinstance(obj, Node)
        mine = [key_of(obj)]
        if not held_by(obj):
            return mine
        return mine + [key_of(n) for n in nodes.items() if not held_by(n) and n is not obj]

    return keys


def node_ipam_controller(client: Client, nodes: Informer[Node], carved: NodeCIDRs) -> Controller:
    """The controller, wired to its informer: one worker, so that allocations never race."""
    controller = Controller("nodeipam", NodeIpamReconciler(client, nodes, carved), workers=1)
    controller.watch(nodes, waiting_keys(nodes))
    return controller
