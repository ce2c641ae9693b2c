"""The pure rules of Endpoints: which pods count, how target ports resolve, how subsets are packed."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from bus.meta import ObjectMeta
from bus.resources import Pod, Service
from bus.resources.networking import ServicePort, ServiceSpec
from bus.resources.pod import (
    Container,
    ContainerPort,
    HostPortMapping,
    PodCondition,
    PodPhase,
    PodSpec,
    PodStatus,
)
from services.controllers.endpointsubsets import MissingPort, endpoint_subsets, host_port, serves

NS = "default"


def service(*ports: ServicePort, selector: dict[str, str] | None = None) -> Service:
    return Service(
        metadata=ObjectMeta(name="web", namespace=NS),
        spec=ServiceSpec(ports=list(ports), selector={"app": "web"} if selector is None else selector),
    )


def pod(
    name: str,
    *,
    ip: str = "127.0.0.11",
    ports: dict[str, int] | None = None,
    ready: bool = True,
    labels: dict[str, str] | None = None,
    phase: PodPhase = "Running",
    node: str = "n1",
    terminating: bool = False,
) -> Pod:
    """A pod of one container declaring `ports` (name -> host port; containerPort 8080, 8081, ...)."""
    ports = {"http": 20000} if ports is None else ports
    declared = [ContainerPort(container_port=8080 + i, name=n) for i, n in enumerate(ports)]
    mappings = [
        HostPortMapping(container="main", container_port=8080 + i, host_port=hp, name=n)
        for i, (n, hp) in enumerate(ports.items())
    ]
    return Pod(
        metadata=ObjectMeta(
            name=name,
            namespace=NS,
            uid=f"uid-{name}",
            labels={"app": "web"} if labels is None else labels,
            deletion_timestamp=datetime.now(UTC) if terminating else None,
        ),
        spec=PodSpec(containers=[Container(name="main", image="i", ports=declared)], node_name=node),
        status=PodStatus(
            phase=phase,
            host_ip=ip if node else "",
            host_ports=mappings,
            conditions=[PodCondition(type="Ready", status="True" if ready else "False")],
        ),
    )


def flat(svc: Service, pods: list[Pod]) -> list[tuple[list[str], list[str], list[tuple[str, int]]]]:
    """Each subset as (ready pod names, not-ready pod names, [(port name, port)])."""
    subsets, _ = endpoint_subsets(svc, pods)
    return [
        (
            [a.target_ref.name for a in s.addresses if a.target_ref],
            [a.target_ref.name for a in s.not_ready_addresses if a.target_ref],
            [(p.name, p.port) for p in s.ports],
        )
        for s in subsets
    ]


HTTP = ServicePort(port=80, name="http", target_port="http")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("http", 20000),  # by name
        (8080, 20000),  # by number
        (8081, 20001),
        ("metrics", 20001),
        (None, None),  # unset: the port's own number (80), which is declared but has no mapping below
    ],
)
def test_target_port_resolves_to_the_allocated_host_port(
    target: int | str | None, expected: int | None
) -> None:
    p = pod("a", ports={"http": 20000, "metrics": 20001})
    if target is None:
        p.spec.containers[0].ports.append(ContainerPort(container_port=80))
    assert host_port(p, ServicePort(port=80, target_port=target)) == expected


@pytest.mark.parametrize(
    ("target", "protocol"), [("admin", "TCP"), (9999, "TCP"), ("http", "UDP"), (8080, "UDP")]
)
def test_an_undeclared_target_port_is_missing(target: int | str, protocol: str) -> None:
    found = host_port(pod("a"), ServicePort(port=80, name="web", target_port=target, protocol=protocol))  # type: ignore[arg-type]
    assert isinstance(found, MissingPort)
    assert found.pod == "a" and found.target == target
    assert '"a"' in found.describe() and str(target) in found.describe() and '"web"' in found.describe()


@pytest.mark.parametrize(
    ("changes", "counts"),
    [
        ({}, True),
        ({"phase": "Succeeded"}, False),
        ({"phase": "Failed"}, False),
        ({"phase": "Pending"}, True),
        ({"node": ""}, False),  # unbound: no node address
        ({"terminating": True}, False),
    ],
)
def test_which_pods_count(changes: dict[str, object], counts: bool) -> None:
    assert serves(pod("a", **changes)) is counts  # type: ignore[arg-type]


def test_ready_and_not_ready_pods_one_subset_per_port_set() -> None:
    pods = [
        pod("b", ip="127.0.0.12", ports={"http": 20500}),
        pod("a", ports={"http": 20000}),
        pod("c", ports={"http": 20000}, ip="127.0.0.13", ready=False),
        pod("other", labels={"app": "db"}),
        pod("gone", phase="Failed"),
    ]
    assert flat(service(HTTP), pods) == [
        (["a"], ["c"], [("http", 20000)]),  # the same host port on two nodes: one subset
        (["b"], [], [("http", 20500)]),
    ]


def test_a_pod_without_the_named_port_is_left_out_of_that_port_only() -> None:
    svc = service(HTTP, ServicePort(port=9090, name="metrics", target_port="metrics"))
    pods = [pod("a", ports={"http": 20000, "metrics": 20001}), pod("b", ports={"http": 20002})]
    subsets, missing = endpoint_subsets(svc, pods)
    assert flat(svc, pods) == [
        (["a"], [], [("http", 20000), ("metrics", 20001)]),
        (["b"], [], [("http", 20002)]),
    ]
    assert [(m.pod, m.target) for m in missing] == [("b", "metrics")]


def test_a_pod_with_no_port_at_all_is_left_out() -> None:
    subsets, missing = endpoint_subsets(service(HTTP), [pod("a", ports={})])
    assert subsets == [] and [m.pod for m in missing] == ["a"]


def test_a_declared_port_not_yet_reported_is_no_problem() -> None:
    p = pod("a")
    p.status.host_ports = []
    assert endpoint_subsets(service(HTTP), [p]) == ([], [])


def test_no_selector_selects_nothing() -> None:
    assert endpoint_subsets(service(HTTP, selector={}), [pod("a")]) == ([], [])


def test_addresses_name_the_pod_and_its_node() -> None:
    subsets, _ = endpoint_subsets(service(HTTP), [pod("a", node="n7", ip="127.0.0.17")])
    address = subsets[0].addresses[0]
    assert (address.ip, address.node_name) == ("127.0.0.17", "n7")
    assert address.target_ref is not None
    assert (address.target_ref.kind, address.target_ref.name, address.target_ref.uid) == ("Pod", "a", "uid-a")


def test_order_is_stable() -> None:
    pods = [pod(f"p{i}", ports={"http": 20000 + i % 3}, ip=f"127.0.0.{11 + i % 2}") for i in range(8)]
    assert endpoint_subsets(service(HTTP), pods) == endpoint_subsets(service(HTTP), list(reversed(pods)))


def on_pod_network(p: Pod, address: str) -> Pod:
    """The pod with an address of its own (the node's stays in hostIP), no host ports."""
    p.status.pod_ip, p.status.host_ports = address, []
    return p


def test_a_pod_on_the_pod_network_is_reached_at_its_own_address_and_container_port() -> None:
    pods = [
        on_pod_network(pod("a", ports={"http": 0}), "10.244.1.2"),
        on_pod_network(pod("b", ports={"http": 0}), "10.244.2.7"),
        pod("h", ports={"http": 20001}),  # on the host's network: the node address and host port
    ]
    subsets, missing = endpoint_subsets(service(ServicePort(name="web", port=80, target_port="http")), pods)
    assert not missing
    by_port = {s.ports[0].port: sorted(a.ip for a in s.addresses) for s in subsets}
    assert by_port == {8080: ["10.244.1.2", "10.244.2.7"], 20001: ["127.0.0.11"]}


def test_on_the_pod_network_a_numeric_target_port_needs_no_declaration() -> None:
    p = on_pod_network(pod("a", ports={}), "10.244.1.2")
    assert host_port(p, ServicePort(port=80, target_port=9376)) == 9376
    assert isinstance(host_port(p, ServicePort(port=80, target_port="metrics")), MissingPort)


@pytest.mark.parametrize(
    ("hostname", "subdomain", "expected"),
    [
        ("web-0", "web", "web-0"),  # the Service's name: DNS answers web-0.web.<ns>.svc.<domain>
        ("web-0", "other", ""),
        ("web-0", "", ""),
        ("", "web", ""),
    ],
)
def test_an_address_carries_the_hostname_of_a_pod_whose_subdomain_is_the_service(
    hostname: str, subdomain: str, expected: str
) -> None:
    ready, not_ready = pod("a"), pod("b", ready=False)
    for p in (ready, not_ready):
        p.spec = msgspec.structs.replace(p.spec, hostname=hostname, subdomain=subdomain)
    subsets, _ = endpoint_subsets(
        service(ServicePort(port=80, name="http", target_port="http")), [ready, not_ready]
    )
    addresses = [a for s in subsets for a in [*s.addresses, *s.not_ready_addresses]]
    assert [a.hostname for a in addresses] == [expected, expected]
