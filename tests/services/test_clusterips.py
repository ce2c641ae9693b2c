"""ClusterIPs through the real bus and API replicas: allocation and its defaults, addresses asked
for, the 422s that name `spec.clusterIP`, immutability, headless Services, LoadBalancer
nodePorts, and the IPAddress object that holds each address from create to delete. The
session's API replicas serve the default service CIDR, 10.96.0.0/16, shared with other tests:
addresses asked for by hand are drawn at random from its static band."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from bus import kinds
from bus.client import Client
from bus.errors import AlreadyExists, Invalid, NotFound
from bus.meta import ObjectMeta
from bus.resources import IPAddress, Namespace, NodePort, Service
from bus.resources.networking import CLUSTER_IP_ALLOCATOR, MANAGED_BY_LABEL, IPAddressSpec, ParentReference
from bus.store import Store
from tests.waiting import wait_gone

CIDR = IPv4Network("10.96.0.0/16")


def manifest(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": [{"port": 80}], **spec},
    }


SERVICES = kinds.BY_KIND["Service"]


async def create(client: Client, namespace: str, name: str = "web", **spec: Any) -> Service:
    stored = await client.create_raw(SERVICES, namespace, manifest(name, namespace, **spec))
    assert isinstance(stored, Service)
    return stored


async def free_static_address(client: Client) -> str:
    """An address of the static band (10.96.0.1-10.96.1.0) no IPAddress holds now."""
    held = {record.metadata.name for record in await client.list(IPAddress, "")}
    choices = [str(CIDR.network_address + i) for i in range(1, 257)]
    return random.choice([c for c in choices if c not in held])


async def free_node_port(client: Client) -> int:
    """A port of the default nodePort range's lower band (30000-30085) no NodePort holds now."""
    held = {int(record.metadata.name) for record in await client.list(NodePort, "")}
    return random.choice([p for p in range(30000, 30086) if p not in held])


async def refused(client: Client, namespace: str, **spec: Any) -> list[tuple[str, str]]:
    with pytest.raises(Invalid) as caught:
        await create(client, namespace, "refused", **spec)
    assert caught.value.message == 'Service "refused" is invalid'
    return [(c.field, c.message) for c in caught.value.causes]


async def test_allocates_an_address_and_fills_in_the_defaults(client: Client, ns: str) -> None:
    svc = await create(client, ns)
    spec = svc.spec
    address = IPv4Address(spec.cluster_ip)
    assert address in CIDR and address not in (CIDR.network_address, CIDR.broadcast_address)
    assert address >= CIDR.network_address + 257  # random allocations leave the static band alone
    assert (spec.cluster_ips, spec.ip_families, spec.ip_family_policy) == (
        [str(address)],
        ["IPv4"],
        "SingleStack",
    )
    record = await client.get(IPAddress, str(address), "")
    assert record.spec.parent_ref == ParentReference(group="", resource="services", namespace=ns, name="web")
    assert record.metadata.labels == {MANAGED_BY_LABEL: CLUSTER_IP_ALLOCATOR}
    assert record.metadata.uid and record.metadata.creation_timestamp is not None  # the repair pass's clock
    assert (await client.get(Service, "web", ns)).spec == spec


async def test_an_address_asked_for_is_given_once(client: Client, ns: str) -> None:
    wanted = await free_static_address(client)
    svc = await create(client, ns, clusterIP=wanted, ipFamilyPolicy="PreferDualStack", ipFamilies=["IPv4"])
    assert (svc.spec.cluster_ip, svc.spec.cluster_ips, svc.spec.ip_family_policy) == (
        wanted,
        [wanted],
        "SingleStack",
    )
    taken = f'Invalid value: "{wanted}": provided IP is already allocated'
    assert await refused(client, ns, clusterIP=wanted) == [("spec.clusterIP", taken)]
    assert await refused(client, ns, clusterIPs=[wanted]) == [("spec.clusterIP", taken)]
    # The refused creates left nothing behind: the address is still the first Service's.
    record = await client.get(IPAddress, wanted, "")
    assert record.spec.parent_ref.name == "web"
    with pytest.raises(NotFound):
        await client.get(Service, "refused", ns)


async def test_clusterips_alone_asks_for_an_address(client: Client, ns: str) -> None:
    wanted = await free_static_address(client)
    svc = await create(client, ns, clusterIPs=[wanted])
    assert (svc.spec.cluster_ip, svc.spec.cluster_ips) == (wanted, [wanted])


@pytest.mark.parametrize(
    ("spec", "causes"),
    [
        (
            {"clusterIP": "10.97.0.1"},
            [
                (
                    "spec.clusterIP",
                    'Invalid value: "10.97.0.1": provided IP is not in the valid range. '
                    "The range of valid IPs is 10.96.0.0/16",
                )
            ],
        ),
        (
            {"clusterIP": "10.96.0.0"},
            [
                (
                    "spec.clusterIP",
                    'Invalid value: "10.96.0.0": provided IP is not in the valid range. The range of valid '
                    "IPs is 10.96.0.0/16 (but for its network address and its broadcast address)",
                )
            ],
        ),
        (
            {"clusterIP": "10.96.255.255"},
            [
                (
                    "spec.clusterIP",
                    'Invalid value: "10.96.255.255": provided IP is not in the valid range. The range of '
                    "valid IPs is 10.96.0.0/16 (but for its network address and its broadcast address)",
                )
            ],
        ),
        (
            {"clusterIP": "10.96.0.300"},
            [
                (
                    "spec.clusterIP",
                    'Invalid value: "10.96.0.300": must be a valid IP address, '
                    "(e.g. 10.9.8.7 or 2001:db8::ffff)",
                )
            ],
        ),
        (
            {"clusterIP": "None", "type": "NodePort"},
            [("spec.clusterIP", "Invalid value: \"None\": may not be set to 'None' for NodePort services")],
        ),
        (
            {"clusterIP": "None", "type": "LoadBalancer"},
            [
                (
                    "spec.clusterIP",
                    "Invalid value: \"None\": may not be set to 'None' for LoadBalancer services",
                )
            ],
        ),
        (
            {"ipFamilyPolicy": "RequireDualStack"},
            [
                (
                    "spec.ipFamilyPolicy",
                    'Invalid value: "RequireDualStack": '
                    "this cluster is not configured for dual-stack services",
                )
            ],
        ),
        (
            {"ipFamilies": ["IPv6"]},
            [("spec.ipFamilies[0]", 'Unsupported value: "IPv6": supported values: "IPv4"')],
        ),
        (
            {"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.6"]},
            [("spec.clusterIPs", 'Invalid value: ["10.96.0.6"]: first value must match `clusterIP`')],
        ),
    ],
    ids=[
        "outside",
        "network",
        "broadcast",
        "not-an-address",
        "headless-nodeport",
        "headless-loadbalancer",
        "dual-stack",
        "ipv6",
        "mismatch",
    ],
)
async def test_refused(client: Client, ns: str, spec: dict[str, Any], causes: list[tuple[str, str]]) -> None:
    assert await refused(client, ns, **spec) == causes


async def test_headless(client: Client, ns: str) -> None:
    svc = await create(client, ns, clusterIP="None")
    spec = svc.spec
    assert (spec.cluster_ip, spec.cluster_ips, spec.ip_families, spec.ip_family_policy) == (
        "None",
        ["None"],
        ["IPv4"],
        "SingleStack",
    )
    owned = [r for r in await client.list(IPAddress, "") if r.spec.parent_ref.namespace == ns]
    assert owned == []


async def test_the_address_cannot_change(client: Client, ns: str) -> None:
    svc = await create(client, ns)
    address = svc.spec.cluster_ip
    # An update that leaves the address out keeps it (a manifest applied again).
    node_port = await free_node_port(client)
    again = manifest("web", ns, type="LoadBalancer", ports=[{"port": 80, "nodePort": node_port}])
    again["metadata"]["resourceVersion"] = svc.metadata.resource_version
    updated = await client.update_raw(SERVICES, ns, again)
    assert isinstance(updated, Service)
    assert (updated.spec.cluster_ip, updated.spec.cluster_ips) == (address, [address])
    assert updated.spec.ports[0].node_port == node_port and updated.spec.type == "LoadBalancer"
    # Changing it is refused, by update and by patch.
    other = str(IPv4Address(address) + 1 if IPv4Address(address) + 1 in CIDR else IPv4Address(address) - 1)
    changed = manifest("web", ns, clusterIP=other)
    with pytest.raises(Invalid) as caught:
        await client.update_raw(SERVICES, ns, changed)
    assert [(c.field, c.message) for c in caught.value.causes] == [
        ("spec.clusterIP", f'Invalid value: "{other}": field is immutable')
    ]
    with pytest.raises(Invalid):
        await client.patch(Service, "web", {"spec": {"clusterIP": "None", "clusterIPs": ["None"]}}, ns)
    assert (await client.get(Service, "web", ns)).spec.cluster_ip == address


async def test_loadbalancer_takes_node_ports_as_nodeport_does(client: Client, ns: str) -> None:
    node_port = await free_node_port(client)
    svc = await create(client, ns, type="LoadBalancer", ports=[{"port": 80, "nodePort": node_port}])
    assert svc.spec.ports[0].node_port == node_port
    assert IPv4Address(svc.spec.cluster_ip) in CIDR
    assert [
        f for f, _ in await refused(client, ns, type="LoadBalancer", ports=[{"port": 80, "nodePort": 80}])
    ] == ["spec.ports[0].nodePort"]
    assert [f for f, _ in await refused(client, ns, ports=[{"port": 80, "nodePort": 31081}])] == [
        "spec.ports[0].nodePort"
    ]


async def test_delete_releases_the_address(client: Client, store: Store, ns: str) -> None:
    svc = await create(client, ns)
    address = svc.spec.cluster_ip
    await client.delete(Service, "web", ns)
    with pytest.raises(NotFound):
        await client.get(IPAddress, address, "")  # gone before the delete was answered
    # ... and it may be asked for again at once.
    again = await create(client, ns, "other", clusterIP=address)
    assert again.spec.cluster_ip == address


async def test_a_failed_create_gives_its_address_back(client: Client, ns: str) -> None:
    first = await create(client, ns)
    wanted = await free_static_address(client)
    with pytest.raises(AlreadyExists):
        await create(client, ns, clusterIP=wanted)  # the name is taken: the address made for it goes
    with pytest.raises(NotFound):
        await client.get(IPAddress, wanted, "")
    with pytest.raises(AlreadyExists):
        await create(client, ns)  # the same with an address chosen at random
    mine = [r.metadata.name for r in await client.list(IPAddress, "") if r.spec.parent_ref.namespace == ns]
    assert mine == [first.spec.cluster_ip]


async def test_deleting_the_namespace_releases_its_addresses(client: Client, store: Store) -> None:
    namespace = f"t-ns-{random.randrange(16**8):08x}"
    await client.create(Namespace(metadata=ObjectMeta(name=namespace)))
    addresses = [(await create(client, namespace, f"s{i}")).spec.cluster_ip for i in range(3)]
    await client.delete(Namespace, namespace, "")
    await wait_gone(store, Namespace, "", namespace)
    for address in addresses:
        with pytest.raises(NotFound):
            await client.get(IPAddress, address, "")


async def test_an_ip_address_is_named_by_its_address(client: Client) -> None:
    parent = ParentReference(resource="services", name="web", namespace="default")
    record = IPAddress(metadata=ObjectMeta(name="10.96.0.300"), spec=IPAddressSpec(parent_ref=parent))
    with pytest.raises(Invalid) as caught:
        await client.create(record)
    assert [c.field for c in caught.value.causes] == ["metadata.name"]


async def test_a_service_created_twice_with_its_address_already_exists(client: Client, ns: str) -> None:
    """A manifest with a fixed address applied twice: the name is what is taken, as without one."""
    wanted = await free_static_address(client)
    first = await create(client, ns, clusterIP=wanted)
    with pytest.raises(AlreadyExists, match='services "web" already exists'):
        await create(client, ns, clusterIP=wanted)
    assert (await client.get(IPAddress, wanted, "")).spec.parent_ref.name == "web"
    assert (await client.get(Service, "web", ns)).metadata.uid == first.metadata.uid
