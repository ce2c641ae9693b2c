"""A service CIDR small enough to fill (`steer api --service-cidr 10.97.0.0/28`, 14 addresses),
served by two API replicas of their own: Services created all at once through both never share
an address, a full range is a clear error, and a deleted Service's address is given again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from ipaddress import IPv4Address, IPv4Network

import pytest

from bus.client import Client
from bus.connection import connect
from bus.errors import Internal
from bus.meta import ObjectMeta
from bus.resources import IPAddress, Service
from bus.resources.networking import ServicePort, ServiceSpec
from tests.conftest import own_cluster

CIDR = IPv4Network("10.97.0.0/28")
SIZE = CIDR.num_addresses - 2


@pytest.fixture(scope="module")
def small_range(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with own_cluster(tmp_path_factory.mktemp("clusterips"), "--service-cidr", str(CIDR), replicas=2) as url:
        yield url


@pytest.fixture
async def small(small_range: str) -> AsyncIterator[Client]:
    nc = await connect(small_range, name="test-clusterips")
    yield Client(nc)
    await nc.close()


def service(name: str) -> Service:
    return Service(
        metadata=ObjectMeta(name=name, namespace="default"), spec=ServiceSpec(ports=[ServicePort(port=80)])
    )


async def test_racing_replicas_fill_the_range_without_sharing_an_address(small: Client) -> None:
    # Every create at once: the two replicas race for the same few addresses.
    made = await asyncio.gather(*(small.create(service(f"s{i}")) for i in range(SIZE)))
    addresses = [IPv4Address(svc.spec.cluster_ip) for svc in made]
    assert sorted(addresses) == [CIDR.network_address + i for i in range(1, SIZE + 1)]
    records = {r.metadata.name: r.spec.parent_ref.name for r in await small.list(IPAddress, "")}
    assert records == {svc.spec.cluster_ip: svc.metadata.name for svc in made}

    # Full: a clear error, and nothing stored.
    with pytest.raises(Internal) as caught:
        await small.create(service("one-too-many"))
    assert caught.value.message == (
        f"failed to allocate a serviceIP: range is full (all {SIZE} addresses of the service CIDR "
        f"{CIDR} are allocated)"
    )
    assert len(await small.list(Service, "default")) == SIZE

    # A deleted Service's address is free again: the next Service gets it, through either replica.
    for i in (3, 7):
        freed = made[i].spec.cluster_ip
        await small.delete(Service, f"s{i}", "default")
        again = await small.create(service(f"again-{i}"))
        assert again.spec.cluster_ip == freed
