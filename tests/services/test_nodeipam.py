"""The node IPAM controller against the real API: distinct subnets, a restart that rebuilds what
is held before allocating, a deleted node's subnet given again, a cluster CIDR that runs out.
The controller runs in the test's event loop; Nodes are made by hand (no agent runs them). Other
tests' Nodes share the store, so expectations are about the Nodes made here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from ipaddress import IPv4Network

import pytest

from bus.client import Client
from bus.errors import Invalid, NotFound
from bus.informer import Informer
from bus.meta import ObjectMeta
from bus.resources import Event, Node
from bus.resources.cluster import NodeSpec
from bus.store import Store
from services.controllers.cidrs import NodeCIDRs
from services.controllers.nodeipam import CIDR_NOT_AVAILABLE, held_by, node_ipam_controller
from tests.waiting import wait_for, wait_gone

Start = Callable[[NodeCIDRs], Awaitable[None]]


@pytest.fixture
async def start(client: Client, store: Store) -> AsyncIterator[Start]:
    """Start a node IPAM controller (its own fresh informer); a second start stops the first."""
    tasks: list[asyncio.Task[None]] = []

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        tasks.clear()

    async def begin(carved: NodeCIDRs) -> None:
        await stop()
        nodes: Informer[Node] = Informer(store, Node)
        control = node_ipam_controller(client, nodes, carved)
        tasks.extend(asyncio.create_task(t) for t in (nodes.run(), control.run()))

    yield begin
    await stop()


def carve(cluster: str, mask: int) -> NodeCIDRs:
    return NodeCIDRs(IPv4Network(cluster), mask)


@pytest.mark.parametrize(
    ("pod_cidr", "pod_cidrs", "held"),
    [
        ("", [], ""),
        ("10.244.1.0/24", ["10.244.1.0/24"], "10.244.1.0/24"),
        ("10.244.1.0/24", [], "10.244.1.0/24"),
        ("", ["10.244.2.0/24"], "10.244.2.0/24"),
    ],
)
def test_held_by(pod_cidr: str, pod_cidrs: list[str], held: str) -> None:
    node = Node(metadata=ObjectMeta(name="n"), spec=NodeSpec(pod_cidr=pod_cidr, pod_cidrs=pod_cidrs))
    assert held_by(node) == held


async def make_node(client: Client, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    await client.create(Node(metadata=ObjectMeta(name=name), spec=NodeSpec(unschedulable=True)))
    return name


async def allocated(store: Store, name: str) -> IPv4Network:
    node = await wait_for(store, Node, "", name, lambda n: bool(n.spec.pod_cidr), within=30)
    assert node.spec.pod_cidrs == [node.spec.pod_cidr]
    return IPv4Network(node.spec.pod_cidr)


async def others_held(client: Client, mine: set[str]) -> set[IPv4Network]:
    nodes = await client.list(Node, "")
    return {IPv4Network(n.spec.pod_cidr) for n in nodes if n.spec.pod_cidr and n.metadata.name not in mine}


async def wait_event(store: Store, involved: str, reason: str) -> Event:
    async with asyncio.timeout(30), contextlib.aclosing(store.watch(Event, "default")) as events:
        async for event in events:
            obj = event.object
            if obj is not None and obj.involved_object.name == involved and obj.reason == reason:
                return obj
    raise AssertionError("the watch ended")


async def test_distinct_subnets_across_a_restart_and_a_deletion(
    client: Client, store: Store, start: Start
) -> None:
    carved = carve("10.244.0.0/16", 24)
    await start(carved)
    names = [await make_node(client, "ipam") for _ in range(3)]
    first = {name: await allocated(store, name) for name in names}
    assert len(set(first.values())) == 3
    assert all(carved.contains(cidr) and cidr.prefixlen == 24 for cidr in first.values())
    assert not set(first.values()) & await others_held(client, set(names))

    # Once set, the API keeps it.
    moved = await client.get(Node, names[0], "")
    moved.spec.pod_cidr = moved.spec.pod_cidrs[0] = "10.244.250.0/24"
    with pytest.raises(Invalid) as refused:
        await client.update(moved)
    assert [c.field for c in refused.value.causes] == ["spec.podCIDR", "spec.podCIDRs"]

    # A new leader starts from nothing but the Nodes: the three subnets stay theirs.
    await start(carved)
    fourth = await make_node(client, "ipam")
    names.append(fourth)
    first[fourth] = await allocated(store, fourth)
    assert len(set(first.values())) == 4
    assert not set(first.values()) & await others_held(client, set(names))

    # A deleted node's subnet is the lowest free one again (the four were given lowest first).
    gone = min(names, key=lambda name: first[name])
    await client.delete(Node, gone, "")
    await wait_gone(store, Node, "", gone)
    fifth = await make_node(client, "ipam")
    assert await allocated(store, fifth) == first[gone]
    for name in [*names, fifth]:
        with contextlib.suppress(NotFound):
            await client.delete(Node, name, "")


class Awaited(logging.Handler):
    """Set once a record containing every one of `words` is logged."""

    def __init__(self, *words: str) -> None:
        super().__init__(logging.WARNING)
        self.words = words
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if all(word in record.getMessage() for word in self.words):
            self.seen.set()


async def test_a_pod_cidr_outside_the_cluster_cidr_is_left_alone(
    client: Client, store: Store, start: Start
) -> None:
    name = f"foreign-{uuid.uuid4().hex[:6]}"
    spec = NodeSpec(unschedulable=True, pod_cidr="192.168.7.0/24", pod_cidrs=["192.168.7.0/24"])
    await client.create(Node(metadata=ObjectMeta(name=name), spec=spec))
    logger = logging.getLogger("services.controllers.nodeipam")
    handler = Awaited(name, "outside the cluster CIDR")
    logger.addHandler(handler)
    try:
        await start(carve("10.244.0.0/16", 24))
        async with asyncio.timeout(30):
            await handler.seen.wait()
    finally:
        logger.removeHandler(handler)
    assert (await client.get(Node, name, "")).spec.pod_cidr == "192.168.7.0/24"
    await client.delete(Node, name, "")


async def test_an_exhausted_cluster_cidr_warns_and_a_freed_subnet_is_given(
    client: Client, store: Store, start: Start
) -> None:
    carved = carve("10.250.0.0/30", 31)  # two node subnets
    await start(carved)
    made, holders = [], []
    for _ in range(carved.size):
        name = await make_node(client, "tiny")
        made.append(name)
        # Nodes left by other tests may take subnets too; each of these is settled either way.
        settled = asyncio.create_task(allocated(store, name))
        warned = asyncio.create_task(wait_event(store, name, CIDR_NOT_AVAILABLE))
        done, pending = await asyncio.wait({settled, warned}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if settled in done:
            holders.append(name)
    last = await make_node(client, "tiny")
    event = await wait_event(store, last, CIDR_NOT_AVAILABLE)
    assert event.type == "Warning"
    assert "10.250.0.0/30" in event.message
    assert not (await client.get(Node, last, "")).spec.pod_cidr

    if holders == made:  # no other Node waits: free one subnet, and the waiting node has it
        freed = IPv4Network((await client.get(Node, holders[0], "")).spec.pod_cidr)
        await client.delete(Node, holders[0], "")
        assert await allocated(store, last) == freed
    for name in [*made, last]:
        with contextlib.suppress(NotFound):
            await client.delete(Node, name, "")
