"""A nodePort range small enough to fill (`steer api --service-node-port-range 30100-30109`, ten
ports), served by two API replicas of their own: Services created all at once through both never
share a port, a full range is a clear error that stores nothing, and a deleted Service's ports
are given again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from bus.client import Client
from bus.connection import connect
from bus.errors import Internal
from bus.meta import ObjectMeta
from bus.resources import NodePort, Service
from bus.resources.networking import ServicePort, ServiceSpec
from tests.conftest import own_cluster

LOW, HIGH = 30100, 30109
SIZE = HIGH - LOW + 1


@pytest.fixture(scope="module")
def small_range(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("nodeports")
    with own_cluster(data, "--service-node-port-range", f"{LOW}-{HIGH}", replicas=2) as url:
        yield url


@pytest.fixture
async def small(small_range: str) -> AsyncIterator[Client]:
    nc = await connect(small_range, name="test-nodeports")
    yield Client(nc)
    await nc.close()


def service(name: str, *, ports: int = 2) -> Service:
    spec = ServiceSpec(type="NodePort", ports=[ServicePort(name=f"p{i}", port=80 + i) for i in range(ports)])
    return Service(metadata=ObjectMeta(name=name, namespace="default"), spec=spec)


async def test_racing_replicas_fill_the_range_without_sharing_a_port(small: Client) -> None:
    # Every create at once: the two replicas race for the same few ports.
    made = await asyncio.gather(*(small.create(service(f"s{i}")) for i in range(SIZE // 2)))
    held = {port.node_port: svc.metadata.name for svc in made for port in svc.spec.ports}
    assert sorted(held) == list(range(LOW, HIGH + 1))
    records = {int(r.metadata.name): r.spec.parent_ref.name for r in await small.list(NodePort, "")}
    assert records == held

    # Full: a clear error, and nothing stored.
    with pytest.raises(Internal) as caught:
        await small.create(service("one-too-many", ports=1))
    assert caught.value.message == (
        f"failed to allocate a nodePort: range is full (all {SIZE} ports of the node port range "
        f"{LOW}-{HIGH} are allocated)"
    )
    assert len(await small.list(Service, "default")) == SIZE // 2
    assert len(await small.list(NodePort, "")) == SIZE

    # A deleted Service's ports are free again: the next Service gets them, through either replica.
    for i in (1, 3):
        freed = {port.node_port for port in made[i].spec.ports}
        await small.delete(Service, f"s{i}", "default")
        again = await small.create(service(f"again-{i}"))
        assert {port.node_port for port in again.spec.ports} == freed
