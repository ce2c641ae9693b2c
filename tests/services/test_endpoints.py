"""The endpoints controller against the real API: ready and not-ready pods, readiness flips within
a second, named ports, a targetPort no container declares, selector-less Services, deletion.
The controller runs in the test's event loop; pods are bound and given a status by the test, as a
node agent would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from bus.client import Client
from bus.errors import Invalid, NotFound
from bus.informer import Informer
from bus.meta import ObjectMeta
from bus.resources import Endpoints, Event, Pod, Service
from bus.resources.networking import (
    LoadBalancerIngress,
    LoadBalancerStatus,
    ServicePort,
    ServiceSpec,
    ServiceStatus,
)
from bus.resources.pod import Container, ContainerPort, HostPortMapping, PodCondition, PodSpec, PodStatus
from bus.store import Store
from services.controllers.endpoints import (
    MANAGED_CONDITION,
    NO_SELECTOR,
    PORT_NOT_FOUND,
    endpoints_controller,
)
from tests.waiting import wait_for, wait_for_all, wait_gone


@pytest.fixture
async def controller(client: Client, store: Store) -> AsyncIterator[None]:
    services: Informer[Service] = Informer(store, Service)
    endpoints: Informer[Endpoints] = Informer(store, Endpoints)
    pods: Informer[Pod] = Informer(store, Pod)
    control = endpoints_controller(client, services, endpoints, pods, workers=2)
    tasks = [asyncio.create_task(t) for t in (services.run(), endpoints.run(), pods.run(), control.run())]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def web_service(ns: str, *ports: ServicePort, selector: dict[str, str] | None = None) -> Service:
    return Service(
        metadata=ObjectMeta(name="web", namespace=ns, labels={"tier": "front"}),
        spec=ServiceSpec(
            ports=list(ports) or [ServicePort(port=80, name="http", target_port="http")],
            selector={"app": "web"} if selector is None else selector,
        ),
    )


async def running_pod(
    client: Client, ns: str, name: str, *, ip: str, ports: dict[str, int], ready: bool = True
) -> Pod:
    """A pod bound to node `n-<ip with dashes>` whose container declares `ports` (name -> host
    port), running."""
    declared = [ContainerPort(container_port=8080 + i, name=n) for i, n in enumerate(ports)]
    spec = PodSpec(
        containers=[Container(name="main", image="i", ports=declared)], node_name=f"n-{ip.replace('.', '-')}"
    )
    pod = await client.create(
        Pod(metadata=ObjectMeta(name=name, namespace=ns, labels={"app": "web"}), spec=spec)
    )
    pod.status = PodStatus(
        phase="Running",
        host_ip=ip,
        host_ports=[
            HostPortMapping(container="main", container_port=8080 + i, host_port=hp, name=n)
            for i, (n, hp) in enumerate(ports.items())
        ],
        conditions=[PodCondition(type="Ready", status="True" if ready else "False")],
    )
    return await client.update_status(pod)


async def set_ready(client: Client, pod: Pod, ready: bool) -> Pod:
    current = await client.get(Pod, pod.metadata.name, pod.metadata.namespace)
    current.status.conditions = [PodCondition(type="Ready", status="True" if ready else "False")]
    return await client.update_status(current)


def addresses(ep: Endpoints) -> tuple[set[str], set[str]]:
    """(ready, not ready) as `pod@ip:port` strings."""

    def names(subset_field: str) -> set[str]:
        return {
            f"{a.target_ref.name if a.target_ref else '?'}@{a.ip}:{p.port}"
            for s in ep.subsets
            for a in getattr(s, subset_field)
            for p in s.ports
        }

    return names("addresses"), names("not_ready_addresses")


def has(ready: set[str], not_ready: frozenset[str] = frozenset()) -> Callable[[Endpoints], bool]:
    return lambda ep: addresses(ep) == (ready, not_ready)


async def test_ready_pods_and_readiness_flips_within_a_second(
    client: Client, store: Store, ns: str, controller: None
) -> None:
    svc = await client.create(web_service(ns))
    a = await running_pod(client, ns, "a", ip="127.0.0.11", ports={"http": 20000})
    b = await running_pod(client, ns, "b", ip="127.0.0.12", ports={"http": 20500}, ready=False)
    await running_pod(client, ns, "c", ip="127.0.0.11", ports={"other": 20001})  # no "http": left out
    ep = await wait_for(
        store, Endpoints, ns, "web", has({"a@127.0.0.11:20000"}, frozenset({"b@127.0.0.12:20500"}))
    )
    assert ep.metadata.labels == {"tier": "front"}
    assert [(r.kind, r.name, r.uid, r.controller) for r in ep.metadata.owner_references] == [
        ("Service", "web", svc.metadata.uid, True)
    ]
    assert [p.name for s in ep.subsets for p in s.ports] == ["http", "http"]
    assert {a.node_name for s in ep.subsets for a in [*s.addresses, *s.not_ready_addresses]} == {
        "n-127-0-0-11",
        "n-127-0-0-12",
    }

    for ready, expected in (
        (True, has({"a@127.0.0.11:20000", "b@127.0.0.12:20500"})),
        (False, has({"a@127.0.0.11:20000"}, frozenset({"b@127.0.0.12:20500"}))),
    ):
        started = time.monotonic()
        await set_ready(client, b, ready)
        await wait_for(store, Endpoints, ns, "web", expected)
        assert time.monotonic() - started < 1.0

    # A pod that goes away, or starts terminating, leaves at once.
    await client.delete(Pod, "a", ns, grace_period_seconds=30)
    await wait_for(store, Endpoints, ns, "web", has(set(), frozenset({"b@127.0.0.12:20500"})))
    assert (await client.get(Pod, "a", ns)).metadata.deletion_timestamp is not None

    await client.delete(Service, "web", ns)
    await wait_gone(store, Endpoints, ns, "web", within=10)
    assert a.metadata.uid


async def test_named_ports_and_a_target_port_no_container_declares(
    client: Client, store: Store, ns: str, controller: None
) -> None:
    ports = (
        ServicePort(port=80, name="http", target_port="http"),
        ServicePort(port=9090, name="metrics", target_port="metrics"),
    )
    await client.create(web_service(ns, *ports))
    await running_pod(client, ns, "full", ip="127.0.0.11", ports={"http": 20000, "metrics": 20001})
    await running_pod(client, ns, "half", ip="127.0.0.12", ports={"http": 20500})
    ep = await wait_for(
        store,
        Endpoints,
        ns,
        "web",
        has({"full@127.0.0.11:20000", "full@127.0.0.11:20001", "half@127.0.0.12:20500"}),
    )
    by_pod = {
        a.target_ref.name: sorted((p.name, p.port) for p in s.ports)
        for s in ep.subsets
        for a in s.addresses
        if a.target_ref
    }
    assert by_pod == {"full": [("http", 20000), ("metrics", 20001)], "half": [("http", 20500)]}
    events = await wait_for_all(
        store, Event, ns, lambda evs: any(e.reason == PORT_NOT_FOUND for e in evs), within=10
    )
    warning = next(e for e in events if e.reason == PORT_NOT_FOUND)
    assert (warning.type, warning.involved_object.kind, warning.involved_object.name) == (
        "Warning",
        "Service",
        "web",
    )
    assert '"half"' in warning.message and '"metrics"' in warning.message


async def test_a_service_without_selector_gets_a_condition_and_no_managed_endpoints(
    client: Client, store: Store, ns: str, controller: None
) -> None:
    await running_pod(client, ns, "a", ip="127.0.0.11", ports={"http": 20000})
    await client.create(web_service(ns, selector={}))
    svc = await wait_for(store, Service, ns, "web", lambda s: bool(s.status.conditions), within=10)
    condition = svc.status.conditions[0]
    assert (condition.type, condition.status, condition.reason) == (MANAGED_CONDITION, "False", NO_SELECTOR)
    assert "no selector" in condition.message
    with pytest.raises(NotFound):  # the condition was written by the reconcile that would have made them
        await client.get(Endpoints, "web", ns)

    # Given a selector, it is managed: the condition goes and the Endpoints come.
    await client.patch(Service, "web", {"spec": {"selector": {"app": "web"}}}, ns)
    await wait_for(store, Endpoints, ns, "web", has({"a@127.0.0.11:20000"}))
    await wait_for(store, Service, ns, "web", lambda s: not s.status.conditions, within=10)


async def test_managed_endpoints_are_restored(
    client: Client, store: Store, ns: str, controller: None
) -> None:
    await client.create(web_service(ns))
    await running_pod(client, ns, "a", ip="127.0.0.11", ports={"http": 20000})
    ep = await wait_for(store, Endpoints, ns, "web", has({"a@127.0.0.11:20000"}))
    ep.subsets = []
    await client.update(ep)
    await wait_for(store, Endpoints, ns, "web", has({"a@127.0.0.11:20000"}))
    await client.delete(Endpoints, "web", ns)
    await wait_for(store, Endpoints, ns, "web", has({"a@127.0.0.11:20000"}))


@pytest.mark.parametrize(
    ("port", "field"),
    [
        (ServicePort(port=70000, name="http"), "spec.ports[0].port"),
        (ServicePort(port=0, name="http"), "spec.ports[0].port"),
        (ServicePort(port=80, name="http", target_port=65536), "spec.ports[0].targetPort"),
        (ServicePort(port=80, name="http", target_port="Not_A_Name"), "spec.ports[0].targetPort"),
    ],
)
async def test_a_port_out_of_range_is_invalid(client: Client, ns: str, port: ServicePort, field: str) -> None:
    with pytest.raises(Invalid) as raised:
        await client.create(web_service(ns, port))
    assert [c.field for c in raised.value.causes] == [field]


async def test_a_pod_whose_subdomain_is_the_service_has_its_hostname_in_the_endpoints(
    client: Client, store: Store, ns: str, controller: None
) -> None:
    await client.create(web_service(ns))
    for name, subdomain in (("a", "web"), ("b", "elsewhere")):
        spec = PodSpec(
            containers=[
                Container(name="main", image="i", ports=[ContainerPort(container_port=8080, name="http")])
            ],
            node_name="n1",
            hostname=f"{name}-host",
            subdomain=subdomain,
        )
        pod = await client.create(
            Pod(metadata=ObjectMeta(name=name, namespace=ns, labels={"app": "web"}), spec=spec)
        )
        pod.status = PodStatus(
            phase="Running",
            host_ip="127.0.0.11",
            host_ports=[HostPortMapping(container="main", container_port=8080, host_port=20000, name="http")],
            conditions=[PodCondition(type="Ready", status="True")],
        )
        await client.update_status(pod)
    ep = await wait_for(store, Endpoints, ns, "web", lambda ep: len(addresses(ep)[0]) == 2)
    hostnames = {a.target_ref.name: a.hostname for s in ep.subsets for a in s.addresses if a.target_ref}
    assert hostnames == {"a": "a-host", "b": ""}


async def test_the_condition_leaves_the_rest_of_the_status_alone(
    client: Client, store: Store, ns: str, controller: None
) -> None:
    """ServiceLB writes `status.loadBalancer` of the same Services: the condition is written
    beside it, never over it."""
    created = await client.create(web_service(ns))  # a selector: no condition to write
    created.status = ServiceStatus(
        load_balancer=LoadBalancerStatus(ingress=[LoadBalancerIngress(ip="192.0.2.1")])
    )
    await client.update_status(created)
    await client.patch(Service, "web", {"spec": {"selector": None}}, ns)
    svc = await wait_for(store, Service, ns, "web", lambda s: bool(s.status.conditions), within=10)
    assert svc.status.conditions[0].reason == NO_SELECTOR
    assert [i.ip for i in svc.status.load_balancer.ingress] == ["192.0.2.1"]
