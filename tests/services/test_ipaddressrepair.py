"""The ClusterIP repair pass against the real API: an allocator's IPAddress whose Service is gone
or holds another address is deleted once it is old enough, and no sooner; the address a Service
holds, and IPAddresses the allocator did not make, are left alone. The controller runs in the
test's event loop with a short minimum age; IPAddresses are made by hand."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bus.client import Client
from bus.controller import Controller
from bus.informer import Informer
from bus.meta import ObjectMeta
from bus.resources import IPAddress, NodePort, Service
from bus.resources.networking import (
    CLUSTER_IP_ALLOCATOR,
    MANAGED_BY_LABEL,
    IPAddressSpec,
    ParentReference,
    ServicePort,
    ServiceSpec,
)
from bus.store import Store
from services.controllers.ipaddressrepair import ipaddress_repair_controller, service_key
from tests.waiting import wait_gone

MIN_AGE = 2.0


@pytest.fixture
async def repairing(client: Client, store: Store) -> AsyncIterator[None]:
    addresses: Informer[IPAddress] = Informer(store, IPAddress)
    services: Informer[Service] = Informer(store, Service)
    control = ipaddress_repair_controller(client, addresses, services, min_age=MIN_AGE)
    async with running(addresses, services, control):
        yield


@contextlib.asynccontextmanager
async def running(*parts: Informer[Any] | Controller) -> AsyncIterator[None]:
    """Run the informers and the controller in this event loop while the block runs."""
    tasks = [asyncio.create_task(part.run()) for part in parts]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def outside_address() -> str:
    """An address of no service CIDR in use here: the test's own."""
    return f"10.254.{random.randrange(256)}.{random.randrange(1, 255)}"


def record(address: str, namespace: str, name: str, *, managed: bool = True) -> IPAddress:
    labels = {MANAGED_BY_LABEL: CLUSTER_IP_ALLOCATOR} if managed else {}
    parent = ParentReference(resource="services", namespace=namespace, name=name)
    return IPAddress(metadata=ObjectMeta(name=address, labels=labels), spec=IPAddressSpec(parent_ref=parent))


async def deleted_after(store: Store, made: IPAddress | NodePort) -> float:
    """Wait until `made` (an allocator's record) is deleted; how long after its creation that was."""
    await wait_gone(store, type(made), "", made.metadata.name, within=30)
    created = made.metadata.creation_timestamp
    assert created is not None
    return (datetime.now(UTC) - created).total_seconds()


@pytest.mark.parametrize(
    ("labels", "group", "resource", "namespace", "key"),
    [
        ({MANAGED_BY_LABEL: CLUSTER_IP_ALLOCATOR}, "", "services", "ns", "ns/web"),
        ({}, "", "services", "ns", ""),
        ({MANAGED_BY_LABEL: "someone-else"}, "", "services", "ns", ""),
        ({MANAGED_BY_LABEL: CLUSTER_IP_ALLOCATOR}, "example.com", "services", "ns", ""),
        ({MANAGED_BY_LABEL: CLUSTER_IP_ALLOCATOR}, "", "gateways", "ns", ""),
        ({MANAGED_BY_LABEL: CLUSTER_IP_ALLOCATOR}, "", "services", "", ""),
    ],
)
def test_service_key(labels: dict[str, str], group: str, resource: str, namespace: str, key: str) -> None:
    parent = ParentReference(group=group, resource=resource, namespace=namespace, name="web")
    made = IPAddress(
        metadata=ObjectMeta(name="10.96.0.1", labels=labels), spec=IPAddressSpec(parent_ref=parent)
    )
    assert service_key(made) == key


async def test_orphans_are_deleted_once_old_enough(
    client: Client, store: Store, ns: str, repairing: None
) -> None:
    holder = await client.create(
        Service(metadata=ObjectMeta(name="web", namespace=ns), spec=ServiceSpec(ports=[ServicePort(port=80)]))
    )
    # Not the allocator's: never touched. Made first, so it is looked at first.
    foreign = await client.create(record(outside_address(), ns, "gone", managed=False))
    gone = await client.create(record(outside_address(), ns, "gone"))  # its Service does not exist
    stale = await client.create(record(outside_address(), ns, "web"))  # its Service holds another
    waited = await asyncio.gather(deleted_after(store, gone), deleted_after(store, stale))
    assert min(waited) >= MIN_AGE  # a create in progress is given its minute
    # What a Service holds, and what is not the allocator's, stay.
    kept = await client.get(IPAddress, holder.spec.cluster_ip, "")
    assert kept.spec.parent_ref.name == "web"
    assert (await client.get(IPAddress, foreign.metadata.name, "")).metadata.uid == foreign.metadata.uid
    await client.delete(IPAddress, foreign.metadata.name, "")


async def test_an_address_whose_service_is_stored_meanwhile_is_kept(
    client: Client, store: Store, ns: str, repairing: None
) -> None:
    # The API's order of writes: the IPAddress, then a moment later the Service that holds it
    # (written straight to the store here, as the API does once the address is its own).
    address = outside_address()
    held = await client.create(record(address, ns, "late"))
    await store.create(
        Service(
            metadata=ObjectMeta(name="late", namespace=ns),
            spec=ServiceSpec(ports=[ServicePort(port=80)], cluster_ip=address, cluster_ips=[address]),
        )
    )
    control = await client.create(record(outside_address(), ns, "nothing"))  # made later, deleted
    await deleted_after(store, control)
    assert (await client.get(IPAddress, address, "")).metadata.uid == held.metadata.uid
    await store.delete(await store.get(Service, ns, "late"))
    await client.delete(IPAddress, address, "")
