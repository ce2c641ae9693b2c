"""The nodePort repair pass against the real API: an allocator's NodePort whose Service is gone or
no longer holds the port is deleted once it is old enough, and no sooner; the ports a Service
holds, and NodePorts the allocator did not make, are left alone. The controller runs in the
test's event loop with a short minimum age; NodePorts are made by hand, on ports outside the
allocator's range."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from bus.client import Client
from bus.informer import Informer
from bus.meta import ObjectMeta
from bus.resources import NodePort, Service
from bus.resources.networking import (
    NODE_PORT_ALLOCATOR,
    NODE_PORT_MANAGED_BY_LABEL,
    NodePortSpec,
    ParentReference,
    ServicePort,
    ServiceSpec,
    ServiceType,
)
from bus.store import Store
from services.controllers.nodeportrepair import NODE_PORTS, nodeport_repair_controller
from tests.services.test_ipaddressrepair import deleted_after, running

MIN_AGE = 2.0


@pytest.fixture
async def repairing(client: Client, store: Store) -> AsyncIterator[None]:
    node_ports: Informer[NodePort] = Informer(store, NodePort)
    services: Informer[Service] = Informer(store, Service)
    control = nodeport_repair_controller(client, node_ports, services, min_age=MIN_AGE)
    async with running(node_ports, services, control):
        yield


def outside_ports(count: int) -> list[int]:
    """Ports of no nodePort range in use here: the test's own."""
    return random.sample(range(40000, 50000), count)


def record(port: int, namespace: str, name: str, *, managed: bool = True) -> NodePort:
    labels = {NODE_PORT_MANAGED_BY_LABEL: NODE_PORT_ALLOCATOR} if managed else {}
    parent = ParentReference(resource="services", namespace=namespace, name=name)
    return NodePort(metadata=ObjectMeta(name=str(port), labels=labels), spec=NodePortSpec(parent_ref=parent))


def node_port_service(
    namespace: str, name: str, node_port: int, *, service_type: ServiceType = "NodePort"
) -> Service:
    ports = [ServicePort(port=80, node_port=node_port if service_type != "ClusterIP" else None)]
    return Service(
        metadata=ObjectMeta(name=name, namespace=namespace), spec=ServiceSpec(type=service_type, ports=ports)
    )


def test_held_ports() -> None:
    assert NODE_PORTS.held(node_port_service("ns", "web", 30080)) == ["30080"]
    assert NODE_PORTS.held(node_port_service("ns", "web", 30080, service_type="LoadBalancer")) == ["30080"]
    assert NODE_PORTS.held(node_port_service("ns", "web", 30080, service_type="ClusterIP")) == []


async def test_orphans_are_deleted_once_old_enough(
    client: Client, store: Store, ns: str, repairing: None
) -> None:
    holder = await client.create(
        Service(
            metadata=ObjectMeta(name="web", namespace=ns),
            spec=ServiceSpec(type="NodePort", ports=[ServicePort(port=80)]),
        )
    )
    (held,) = [port.node_port for port in holder.spec.ports]
    foreign_port, gone_port, stale_port = outside_ports(3)
    # Not the allocator's: never touched. Made first, so it is looked at first.
    foreign = await client.create(record(foreign_port, ns, "gone", managed=False))
    gone = await client.create(record(gone_port, ns, "gone"))  # its Service does not exist
    stale = await client.create(record(stale_port, ns, "web"))  # its Service holds another port
    waited = await asyncio.gather(deleted_after(store, gone), deleted_after(store, stale))
    assert min(waited) >= MIN_AGE  # a create in progress is given its minute
    # What a Service holds, and what is not the allocator's, stay.
    assert (await client.get(NodePort, str(held), "")).spec.parent_ref.name == "web"
    assert (await client.get(NodePort, str(foreign_port), "")).metadata.uid == foreign.metadata.uid
    await client.delete(NodePort, str(foreign_port), "")


async def test_a_port_whose_service_is_stored_meanwhile_is_kept(
    client: Client, store: Store, ns: str, repairing: None
) -> None:
    # The API's order of writes: the NodePort, then a moment later the Service that holds it
    # (written straight to the store here, as the API does once the port is its own).
    port, other = outside_ports(2)
    held = await client.create(record(port, ns, "late"))
    await store.create(node_port_service(ns, "late", port))
    control = await client.create(record(other, ns, "nothing"))  # made later, deleted
    await deleted_after(store, control)
    assert (await client.get(NodePort, str(port), "")).metadata.uid == held.metadata.uid
    await store.delete(await store.get(Service, ns, "late"))
    await client.delete(NodePort, str(port), "")
