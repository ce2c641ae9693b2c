"""Routes to the pod CIDRs of the other nodes, as flannel's host-gw backend makes them.

A pod's packets to another node's pod leave through the node's bridge gateway into the node's
own namespace; from there, to reach a node on another host, this namespace needs one route per
other node: `<its podCIDR> via <its InternalIP>`. That only works when the other node is on a
directly connected network (on-link): a router between the two knows nothing of pod CIDRs.
Nodes whose InternalIP is an address of this namespace share it (several agents on one host,
`steer up`): their bridges' connected routes are here already, and they get nothing.

`NodeRoutes` follows every Node through an informer (the node credential reads the Node bucket,
read-only, for this: bus/permissions.py), and syncs the kernel (routetable.py) when a node's pod
CIDR or InternalIP comes, changes or goes, and every `resync_interval` besides (so a route
someone deleted by hand, or a link that came up, is seen to). It writes nothing before the
informer's first listing: a restarted agent keeps its predecessor's routes, and then only
corrects them. A sync that fails is logged and tried again with a jittered back-off; the
routes already made stay meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bus.backoff import Backoff
from bus.informer import Informer
from bus.resources import Node
from bus.store import Store
from nodeagent.network import routetable
from nodeagent.network.routetable import Reach, Route

log = logging.getLogger(__name__)

SETTLE = 0.1  # seconds a burst of node changes may go on before one sync takes them all
RESYNC_INTERVAL = 60.0


@dataclass(frozen=True)
class Peer:
    """Another node, as far as routing to its pods goes."""

    node: str
    pod_cidr: str
    address: str  # its InternalIP


def peer_of(node: Node) -> Peer | None:
    """The node's pod CIDR and first IPv4 InternalIP, if it has both."""
    cidr = node.spec.pod_cidr or next(iter(node.spec.pod_cidrs), "")
    internal = [a.address for a in node.status.addresses if a.type == "InternalIP"]
    address = next((a for a in internal if _is_ipv4(a)), "")
    if not cidr or not address:
        return None
    try:
        network = ipaddress.IPv4Network(cidr)
    except ValueError:
        return None
    return Peer(node.metadata.name, str(network), address)


def peers(nodes: Iterable[Node], *, own: str, own_cidr: str, cluster_cidr: str) -> list[Peer]:
    """The other nodes to route to: a pod CIDR inside the cluster CIDR that overlaps neither
    this node's nor one claimed by a node before it (by name; a conflict is the IPAM's to fix)."""
    cluster = ipaddress.IPv4Network(cluster_cidr)
    taken = [ipaddress.IPv4Network(own_cidr)] if own_cidr else []
    chosen = []
    for peer in sorted(filter(None, map(peer_of, nodes)), key=lambda p: p.node):
        network = ipaddress.IPv4Network(peer.pod_cidr)
        if peer.node == own or not network.subnet_of(cluster) or any(network.overlaps(t) for t in taken):
            continue
        taken.append(network)
        chosen.append(peer)
    return chosen


def wanted(peers: Iterable[Peer], reached: Mapping[str, tuple[Reach, int]]) -> dict[str, Route]:
    """A route for every peer reached on-link, by destination."""
    routes = {}
    for peer in peers:
        how, oif = reached.get(peer.address, (Reach.UNREACHABLE, 0))
        if how is Reach.ON_LINK:
            routes[peer.pod_cidr] = Route(peer.pod_cidr, peer.address, oif)
    return routes


@dataclass(frozen=True)
class Changes:
    add: list[Route]
    replace: list[Route]
    delete: list[Route]

    def __bool__(self) -> bool:
        return bool(self.add or self.replace or self.delete)


def changes(want: Mapping[str, Route], have: Mapping[str, Route]) -> Changes:
    """What turns the routes we have into the ones we want."""
    return Changes(
        add=[r for dst, r in sorted(want.items()) if dst not in have],
        replace=[r for dst, r in sorted(want.items()) if dst in have and have[dst] != r],
        delete=[r for dst, r in sorted(have.items()) if dst not in want],
    )


def sync_kernel(peers: list[Peer], *, cluster_cidr: str) -> tuple[dict[str, Reach], list[Route]]:
    """Bring our routes in line with `peers` (a thread's work: netlink). How each peer's address
    is reached, and the wanted routes whose destination some other route holds."""
    reached = routetable.reach(sorted({p.address for p in peers}))
    want = wanted(peers, reached)
    todo = changes(want, routetable.owned(cluster_cidr))
    for route in todo.delete:
        routetable.delete(route)
        log.info("route to %s via %s removed", route.dst, route.gateway)
    for route in todo.replace:
        routetable.replace(route)
        log.info("route to %s now via %s", route.dst, route.gateway)
    blocked = []
    for route in todo.add:
        if routetable.add(route):
            log.info("route to %s via %s added", route.dst, route.gateway)
        else:
            blocked.append(route)
    return {p.node: reached[p.address][0] for p in peers}, blocked


class NodeRoutes:
    def __init__(
        self,
        nodes: Informer[Node],
        *,
        node: str,
        pod_cidr: str,
        cluster_cidr: str,
        resync_interval: float = RESYNC_INTERVAL,
        settle: float = SETTLE,
        retry: Backoff | None = None,
    ) -> None:
        self.nodes = nodes
        self.node, self.pod_cidr, self.cluster_cidr = node, pod_cidr, cluster_cidr
        self.resync_interval = resync_interval
        self.settle = settle
        self.retry = retry or Backoff(first=0.5, cap=30.0)
        self.changed = asyncio.Event()
        self.syncs = 0
        self._told: dict[str, str] = {}  # what was last said of each peer not routed, and why
        nodes.on_change(self._on_change)

    def _on_change(self, _change: object, old: Node | None, new: Node | None) -> None:
        # Heartbeats rewrite every Node each minute: only a pod CIDR or an address matters here.
        if (peer_of(old) if old else None) != (peer_of(new) if new else None):
            self.changed.set()

    async def run(self) -> None:
        """Keep the routes current until cancelled. Never raises for a failed sync."""
        await self.nodes.synced.wait()
        self.changed.set()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.resync_interval):
                    await self.changed.wait()
            await asyncio.sleep(self.settle)
            self.changed.clear()
            try:
                await self.sync()
            except Exception as err:  # noqa: BLE001 (netlink: logged, tried again, never fatal)
                delay = self.retry.next()
                log.warning("routes to other nodes: sync failed (%s); again in %.1fs", err, delay)
                await asyncio.sleep(delay)
                self.changed.set()
            else:
                self.retry.reset()

    async def sync(self) -> None:
        nodes = self.nodes.items()
        chosen = peers(nodes, own=self.node, own_cidr=self.pod_cidr, cluster_cidr=self.cluster_cidr)
        reached, blocked = await asyncio.to_thread(sync_kernel, chosen, cluster_cidr=self.cluster_cidr)
        self._tell(chosen, reached, blocked)
        self.syncs += 1

    def _tell(self, chosen: list[Peer], reached: Mapping[str, Reach], blocked: list[Route]) -> None:
        """Log once (not at every resync) why a peer gets no route."""
        held = {r.dst for r in blocked}
        now = {}
        for peer in chosen:
            if peer.pod_cidr in held:
                now[peer.node] = f"another route to {peer.pod_cidr} exists already (not ours: left alone)"
            elif reached[peer.node] is Reach.GATEWAY or reached[peer.node] is Reach.UNREACHABLE:
                now[peer.node] = f"its address {peer.address} is {reached[peer.node].value}, not on-link"
        for node, why in sorted(now.items()):
            if self._told.get(node) != why:
                log.warning("no route to the pods of node %s: %s", node, why)
        self._told = now


async def run(
    store: Store, *, node: str, pod_cidr: str, cluster_cidr: str, resync_interval: float = RESYNC_INTERVAL
) -> None:
    """Watch the Nodes and keep the routes to their pod CIDRs, until cancelled."""
    nodes: Informer[Node] = Informer(store, Node)
    routes = NodeRoutes(
        nodes, node=node, pod_cidr=pod_cidr, cluster_cidr=cluster_cidr, resync_interval=resync_interval
    )
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(nodes.run())
        tasks.create_task(routes.run())


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True
