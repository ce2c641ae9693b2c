"""NodePorts through the real bus and API replicas: every port of a NodePort or LoadBalancer
Service gets one, a port asked for is given once (422 naming `spec.ports[i].nodePort` when it
is taken or outside the range, nothing stored), an update keeps the ports it leaves out and
gives back those it drops, and a delete gives its ports back. The session's API replicas serve
the default range, 30000-32767, shared with other tests: ports asked for by hand are drawn at
random from its lower band, where random allocations go last."""

from __future__ import annotations

import random
from typing import Any

import pytest

from bus import kinds
from bus.client import Client
from bus.errors import AlreadyExists, Invalid, NotFound
from bus.resources import NodePort, Service
from bus.resources.networking import NODE_PORT_ALLOCATOR, NODE_PORT_MANAGED_BY_LABEL, ParentReference
from tests.services.test_clusterips import manifest

LOW, HIGH = 30000, 32767
BAND = 86  # the lower band of the default range
SERVICES = kinds.BY_KIND["Service"]


def ports(*numbers: int, node_ports: tuple[int | None, ...] = ()) -> list[dict[str, Any]]:
    """Named Service ports, with the nodePorts given (None: left to the API)."""
    given = list(node_ports) + [None] * (len(numbers) - len(node_ports))
    return [
        {"name": f"p{number}", "port": number, **({"nodePort": node_port} if node_port else {})}
        for number, node_port in zip(numbers, given, strict=True)
    ]


async def create(client: Client, namespace: str, name: str = "web", **spec: Any) -> Service:
    stored = await client.create_raw(SERVICES, namespace, manifest(name, namespace, **spec))
    assert isinstance(stored, Service)
    return stored


async def update(client: Client, namespace: str, name: str = "web", **spec: Any) -> Service:
    stored = await client.update_raw(SERVICES, namespace, manifest(name, namespace, **spec))
    assert isinstance(stored, Service)
    return stored


def node_ports(svc: Service) -> list[int]:
    return [port.node_port for port in svc.spec.ports if port.node_port is not None]


async def held_by(client: Client, namespace: str) -> dict[int, str]:
    """The NodePorts held by the Services of `namespace`: port -> Service name."""
    return {
        int(record.metadata.name): record.spec.parent_ref.name
        for record in await client.list(NodePort, "")
        if record.spec.parent_ref.namespace == namespace
    }


async def free_static_ports(client: Client, count: int = 1) -> list[int]:
    """Ports of the lower band no NodePort holds now."""
    held = {int(record.metadata.name) for record in await client.list(NodePort, "")}
    return random.sample([p for p in range(LOW, LOW + BAND) if p not in held], count)


async def refused(client: Client, namespace: str, **spec: Any) -> list[tuple[str, str]]:
    with pytest.raises(Invalid) as caught:
        await create(client, namespace, "refused", **spec)
    assert caught.value.message == 'Service "refused" is invalid'
    return [(c.field, c.message) for c in caught.value.causes]


@pytest.mark.parametrize("service_type", ["NodePort", "LoadBalancer"])
async def test_every_port_gets_its_own_node_port(client: Client, ns: str, service_type: str) -> None:
    svc = await create(client, ns, type=service_type, ports=ports(80, 443, 8080))
    allocated = node_ports(svc)
    assert len(allocated) == len(set(allocated)) == 3
    assert all(LOW + BAND <= port <= HIGH for port in allocated)  # random ones spare the lower band
    assert (await client.get(Service, "web", ns)).spec == svc.spec
    assert await held_by(client, ns) == dict.fromkeys(allocated, "web")
    record = await client.get(NodePort, str(allocated[0]), "")
    assert record.spec.parent_ref == ParentReference(group="", resource="services", namespace=ns, name="web")
    assert record.metadata.labels == {NODE_PORT_MANAGED_BY_LABEL: NODE_PORT_ALLOCATOR}
    assert record.metadata.uid and record.metadata.creation_timestamp is not None  # the repair pass's clock


async def test_a_cluster_ip_service_holds_none(client: Client, ns: str) -> None:
    svc = await create(client, ns, ports=ports(80, 443))
    assert node_ports(svc) == [] and await held_by(client, ns) == {}


async def test_a_port_asked_for_is_given_once(client: Client, ns: str) -> None:
    wanted, other = await free_static_ports(client, 2)
    svc = await create(client, ns, type="NodePort", ports=ports(80, 443, node_ports=(wanted,)))
    assert node_ports(svc)[0] == wanted
    # Taken: refused, naming the port; the other port asked for is not kept, nor the Service.
    taken = f"Invalid value: {wanted}: provided port is already allocated"
    asked = ports(80, 443, node_ports=(other, wanted))
    assert await refused(client, ns, type="LoadBalancer", ports=asked) == [("spec.ports[1].nodePort", taken)]
    with pytest.raises(NotFound):
        await client.get(Service, "refused", ns)
    assert await held_by(client, ns) == dict.fromkeys(node_ports(svc), "web")
    # Outside the range: refused by the allocator, with the range.
    outside = (
        "Invalid value: 8080: provided port is not in the valid range. "
        "The range of valid ports is 30000-32767"
    )
    asked = ports(80, node_ports=(8080,))
    assert await refused(client, ns, type="NodePort", ports=asked) == [("spec.ports[0].nodePort", outside)]
    assert await held_by(client, ns) == dict.fromkeys(node_ports(svc), "web")


async def test_a_service_created_twice_with_its_port_already_exists(client: Client, ns: str) -> None:
    """A manifest with a fixed nodePort applied twice: the name is what is taken, as without one."""
    (wanted,) = await free_static_ports(client)
    first = await create(client, ns, type="NodePort", ports=ports(80, node_ports=(wanted,)))
    with pytest.raises(AlreadyExists, match='services "web" already exists'):
        await create(client, ns, type="NodePort", ports=ports(80, node_ports=(wanted,)))
    assert await held_by(client, ns) == {wanted: "web"}
    assert (await client.get(Service, "web", ns)).metadata.uid == first.metadata.uid


async def test_an_update_keeps_adds_and_gives_back(client: Client, ns: str) -> None:
    svc = await create(client, ns, type="NodePort", ports=ports(80, 443))
    first, second = node_ports(svc)
    # The manifest applied again, without its nodePorts: nothing changes.
    again = await update(client, ns, type="NodePort", ports=ports(80, 443))
    assert node_ports(again) == [first, second]
    assert again.metadata.resource_version == svc.metadata.resource_version
    # A port added gets one; a port dropped gives its own back; LoadBalancer keeps them too.
    changed = await update(client, ns, type="LoadBalancer", ports=ports(80, 8080))
    assert node_ports(changed)[0] == first
    added = node_ports(changed)[1]
    assert added not in (first, second)
    assert await held_by(client, ns) == {first: "web", added: "web"}
    # A port asked for by an update is claimed like one asked for by a create.
    (wanted,) = await free_static_ports(client)
    moved = await update(client, ns, type="LoadBalancer", ports=ports(80, 8080, node_ports=(wanted,)))
    assert node_ports(moved) == [wanted, added]
    assert await held_by(client, ns) == {wanted: "web", added: "web"}
    other = await create(client, ns, "other", type="NodePort", ports=ports(80))
    with pytest.raises(Invalid) as caught:
        await update(client, ns, type="NodePort", ports=ports(80, 8080, node_ports=(node_ports(other)[0],)))
    assert [c.field for c in caught.value.causes] == ["spec.ports[0].nodePort"]
    # Back to ClusterIP: every nodePort given back.
    plain = await update(client, ns, ports=ports(80, 8080))
    assert node_ports(plain) == []
    assert await held_by(client, ns) == dict.fromkeys(node_ports(other), "other")


async def test_a_patch_to_node_port_allocates(client: Client, ns: str) -> None:
    await create(client, ns, ports=ports(80))
    patched = await client.patch(Service, "web", {"spec": {"type": "NodePort"}}, ns)
    assert await held_by(client, ns) == dict.fromkeys(node_ports(patched), "web")
    assert len(node_ports(patched)) == 1


async def test_delete_gives_the_ports_back(client: Client, ns: str) -> None:
    (wanted,) = await free_static_ports(client)
    svc = await create(client, ns, type="LoadBalancer", ports=ports(80, 443, node_ports=(wanted,)))
    await client.delete(Service, "web", ns)
    assert await held_by(client, ns) == {}  # gone before the delete was answered
    # ... and they may be asked for again at once.
    again = await create(
        client, ns, "again", type="NodePort", ports=ports(80, 443, node_ports=tuple(node_ports(svc)))
    )
    assert node_ports(again) == node_ports(svc)


async def test_a_type_change_alone_drops_the_node_ports(client: Client, ns: str) -> None:
    """`kubectl edit` of the type only: the nodePorts sent back as they were are dropped, as in
    Kubernetes, and given back."""
    svc = await create(client, ns, type="NodePort", ports=ports(80))
    plain = await update(client, ns, ports=ports(80, node_ports=tuple(node_ports(svc))))
    assert node_ports(plain) == [] and await held_by(client, ns) == {}
    again = await create(client, ns, "again", type="NodePort", ports=ports(80))
    patched = await client.patch(Service, "again", {"spec": {"type": "ClusterIP"}}, ns)
    assert node_ports(again) and node_ports(patched) == [] and await held_by(client, ns) == {}
