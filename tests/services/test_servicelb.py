"""ServiceLB: which addresses a LoadBalancer Service publishes (a table), and the controller
against the real API: the Ready nodes' InternalIPs, sorted, following nodes that come and go,
cleared when the Service changes type. Nodes are made by hand (no agent runs them); other
tests' Nodes share the store, so expectations are about the Nodes made here."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest

from bus.client import Client
from bus.informer import Informer
from bus.meta import ObjectMeta
from bus.resources import Node, Service
from bus.resources.cluster import NodeAddress, NodeCondition, NodeSpec, NodeStatus
from bus.resources.networking import (
    LoadBalancerIngress,
    ServiceCondition,
    ServicePort,
    ServiceSpec,
    ServiceType,
)
from bus.store import Store
from services.controllers.servicelb import EXCLUDE_LABEL, ingress_for, service_lb_controller
from tests.waiting import wait_for


def node(
    address: str, *, ready: bool = True, labels: dict[str, str] | None = None, kind: str = "InternalIP"
) -> Node:
    status = NodeStatus(
        conditions=[NodeCondition(type="Ready", status="True" if ready else "False")],
        addresses=[NodeAddress(type=kind, address=address), NodeAddress(type="Hostname", address="h")],  # type: ignore[arg-type]
    )
    return Node(
        metadata=ObjectMeta(name=f"lb-{uuid.uuid4().hex[:6]}", labels=labels or {}),
        spec=NodeSpec(unschedulable=True),
        status=status,
    )


def service(type_: ServiceType = "LoadBalancer", namespace: str = "default") -> Service:
    return Service(
        metadata=ObjectMeta(name="web", namespace=namespace),
        spec=ServiceSpec(ports=[ServicePort(port=80)], type=type_),
    )


def ips(*addresses: str) -> list[LoadBalancerIngress]:
    return [LoadBalancerIngress(ip=a) for a in addresses]


@pytest.mark.parametrize(
    ("svc", "nodes", "wanted"),
    [
        (
            service(),
            [node("10.0.0.2"), node("10.0.0.10"), node("10.0.0.9")],
            ips("10.0.0.2", "10.0.0.9", "10.0.0.10"),
        ),
        (service(), [node("10.0.0.2"), node("10.0.0.3", ready=False)], ips("10.0.0.2")),
        (service(), [node("10.0.0.2"), node("10.0.0.3", labels={EXCLUDE_LABEL: ""})], ips("10.0.0.2")),
        (service(), [node("10.0.0.2"), node("10.0.0.2")], ips("10.0.0.2")),
        (service(), [node("10.0.0.2"), node("192.0.2.1", kind="ExternalIP")], ips("10.0.0.2")),
        (service(), [node("10.0.0.2"), node("not-an-address")], ips("10.0.0.2")),
        (service(), [], []),
        (service("NodePort"), [node("10.0.0.2")], []),
        (service("ClusterIP"), [node("10.0.0.2")], []),
    ],
    ids=[
        "sorted",
        "not-ready",
        "excluded",
        "once",
        "internal-only",
        "garbage",
        "no-nodes",
        "nodeport",
        "clusterip",
    ],
)
def test_ingress_for(svc: Service, nodes: list[Node], wanted: list[LoadBalancerIngress]) -> None:
    assert ingress_for(svc, nodes) == wanted


@pytest.fixture
async def servicelb(client: Client, store: Store) -> AsyncIterator[None]:
    services: Informer[Service] = Informer(store, Service)
    nodes: Informer[Node] = Informer(store, Node)
    control = service_lb_controller(client, services, nodes)
    tasks = [asyncio.create_task(t) for t in (services.run(), nodes.run(), control.run())]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def made_nodes(client: Client) -> AsyncIterator[list[Node]]:
    made: list[Node] = []
    yield made
    for n in made:
        await client.delete(Node, n.metadata.name, "")


def published(svc: Service) -> list[str]:
    return [i.ip for i in svc.status.load_balancer.ingress]


async def test_publishes_ready_nodes_and_follows_them(
    client: Client, store: Store, ns: str, servicelb: None, made_nodes: list[Node]
) -> None:
    base = f"198.18.{random.randrange(256)}"
    for address, ready in ((f"{base}.20", True), (f"{base}.3", True), (f"{base}.7", False)):
        made_nodes.append(await client.create(node(address, ready=ready)))
    await client.create(service(namespace=ns))

    def mine(svc: Service) -> list[str]:
        return [ip for ip in published(svc) if ip.startswith(f"{base}.")]

    def ordered(svc: Service) -> bool:
        shown = [ipaddress.ip_address(ip) for ip in published(svc)]
        return shown == sorted(set(shown), key=lambda a: (a.version, a))

    svc = await wait_for(store, Service, ns, "web", lambda s: mine(s) == [f"{base}.3", f"{base}.20"])
    assert ordered(svc)

    # A node turning Ready joins; one turning NotReady leaves.
    late = await client.get(Node, made_nodes[2].metadata.name, "")
    late.status.conditions = [NodeCondition(type="Ready", status="True")]
    await client.update_status(late)
    await wait_for(store, Service, ns, "web", lambda s: mine(s) == [f"{base}.3", f"{base}.7", f"{base}.20"])
    first = await client.get(Node, made_nodes[0].metadata.name, "")
    first.status.conditions = [NodeCondition(type="Ready", status="False")]
    await client.update_status(first)
    svc = await wait_for(store, Service, ns, "web", lambda s: mine(s) == [f"{base}.3", f"{base}.7"])
    assert ordered(svc)

    # Another type: nothing is published any more.
    current = await client.get(Service, "web", ns)
    await client.update(
        msgspec.structs.replace(current, spec=msgspec.structs.replace(current.spec, type="ClusterIP"))
    )
    await wait_for(store, Service, ns, "web", lambda s: not s.status.load_balancer.ingress)


async def test_keeps_the_rest_of_the_status(
    client: Client, store: Store, ns: str, servicelb: None, made_nodes: list[Node]
) -> None:
    made_nodes.append(await client.create(node(f"198.19.{random.randrange(256)}.1")))
    created = await client.create(service("ClusterIP", namespace=ns))
    # A condition another controller wrote stays when the ingress is written.
    condition = ServiceCondition(type="Example", status="True", reason="Testing")
    created.status = msgspec.structs.replace(created.status, conditions=[condition])
    written = await client.update_status(created)
    await client.update(
        msgspec.structs.replace(written, spec=msgspec.structs.replace(written.spec, type="LoadBalancer"))
    )
    svc = await wait_for(store, Service, ns, "web", lambda s: bool(s.status.load_balancer.ingress))
    assert svc.status.conditions == [condition]
