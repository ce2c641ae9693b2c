"""The proxy's pure parts: the mirror of feed and listings, routes from Services and Endpoints,
balancing order, and request counts."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from bus.meta import ObjectMeta, ObjectReference
from bus.resources import Endpoints, Service
from bus.resources.networking import EndpointAddress, EndpointPort, EndpointSubset, ServicePort, ServiceSpec
from nodeagent.proxy.balancing import Pool
from nodeagent.proxy.mirror import Mirror
from nodeagent.proxy.routes import Backend, PoolKey, routes
from nodeagent.proxy.tally import Tally

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def service(
    name: str, *ports: ServicePort, rv: int = 1, ns: str = "ns", age: int = 0, **spec: str
) -> Service:
    created = T0 + timedelta(days=age)
    meta = ObjectMeta(name=name, namespace=ns, resource_version=str(rv), creation_timestamp=created)
    return Service(metadata=meta, spec=ServiceSpec(ports=list(ports), selector={"app": name}, **spec))  # type: ignore[arg-type]


def address(pod: str, ip: str = "127.0.0.2") -> EndpointAddress:
    return EndpointAddress(ip=ip, target_ref=ObjectReference(kind="Pod", name=pod, uid=f"uid-{pod}"))


def endpoints(name: str, *subsets: EndpointSubset, ns: str = "ns") -> Endpoints:
    return Endpoints(metadata=ObjectMeta(name=name, namespace=ns), subsets=list(subsets))


# -- mirror


def test_mirror_keeps_the_newest_version_in_any_order() -> None:
    mirror: Mirror[Service] = Mirror()
    assert mirror.put(service("a", rv=5))
    assert not mirror.put(service("a", rv=3))  # a late feed message
    held = mirror.get(("ns", "a"))
    assert held is not None and held.metadata.resource_version == "5"


def test_a_deletion_is_not_undone_by_an_older_listing() -> None:
    mirror: Mirror[Service] = Mirror()
    mark = mirror.mark()  # the listing is asked for ...
    mirror.put(service("a", rv=5))
    assert mirror.delete(service("a", rv=5))  # ... the feed says created, then deleted ...
    assert not mirror.replace([service("a", rv=5)], mark)  # ... and the listing still has it
    assert mirror.objects == {}
    assert mirror.put(service("a", rv=9))  # recreated later: a newer revision


def test_a_listing_removes_what_it_lacks_but_keeps_newer_feed_news() -> None:
    mirror: Mirror[Service] = Mirror()
    mirror.put(service("gone", rv=2))  # its deletion was lost
    mark = mirror.mark()
    mirror.put(service("new", rv=7))  # created after the listing was asked for
    assert mirror.replace([service("kept", rv=3)], mark)
    assert set(mirror.objects) == {("ns", "kept"), ("ns", "new")}
    assert mirror.replace([service("kept", rv=3)], mirror.mark())  # the next listing is the truth
    assert set(mirror.objects) == {("ns", "kept")}


def test_a_deletion_of_an_older_version_keeps_the_newer_one() -> None:
    mirror: Mirror[Service] = Mirror()
    mirror.put(service("a", rv=8))
    assert not mirror.delete(service("a", rv=4))
    assert mirror.get(("ns", "a")) is not None


# -- routes

HTTP = ServicePort(name="http", port=8080, target_port="http")


def test_routes_take_ready_addresses_of_the_port_with_the_service_port_name() -> None:
    subsets = [
        EndpointSubset(
            addresses=[address("b"), address("a")],
            not_ready_addresses=[address("sick")],
            ports=[EndpointPort(name="http", port=20001), EndpointPort(name="metrics", port=20002)],
        ),
        EndpointSubset(addresses=[address("c", "127.0.0.3")], ports=[EndpointPort(name="http", port=20005)]),
    ]
    wanted = routes([service("web", HTTP)], {("ns", "web"): endpoints("web", *subsets)})
    [route] = wanted[8080]
    assert route.pool == PoolKey("ns", "web", "http")
    assert route.backends == (
        Backend("127.0.0.2", 20001, "a", "uid-a"),
        Backend("127.0.0.2", 20001, "b", "uid-b"),
        Backend("127.0.0.3", 20005, "c", "uid-c"),
    )


def test_a_service_without_endpoints_is_routed_with_no_backends() -> None:
    assert routes([service("web", HTTP)], {})[8080][0].backends == ()


def test_node_port_services_listen_on_both_ports_and_udp_is_left_out() -> None:
    ports = [
        ServicePort(name="http", port=80, node_port=30080),
        ServicePort(name="dns", port=53, protocol="UDP"),
    ]
    wanted = routes([service("web", *ports, type="NodePort")], {})
    assert sorted(wanted) == [80, 30080]
    assert wanted[80][0].pool == wanted[30080][0].pool


def test_services_wanting_the_same_port_are_listed_oldest_first() -> None:
    wanted = routes([service("young", HTTP, age=2), service("old", HTTP, ns="other", age=1)], {})
    assert [r.pool.service for r in wanted[8080]] == ["old", "young"]


# -- balancing

A, B, C = (Backend("127.0.0.2", p) for p in (1, 2, 3))


def test_round_robin_turns_through_the_backends() -> None:
    pool = Pool((A, B, C))
    firsts = [pool.candidates()[0] for _ in range(6)]
    assert firsts == [A, B, C, A, B, C]
    assert pool.candidates() == [A, B, C]  # then the others, for when the first refuses


def test_round_robin_goes_on_after_the_backends_change() -> None:
    pool = Pool((A, B, C))
    pool.candidates()
    pool.update((A, C))
    assert Counter(pool.candidates()[0] for _ in range(10)) == {A: 5, C: 5}


@pytest.mark.parametrize(("active", "first"), [({A: 2, B: 1}, C), ({A: 1, B: 0, C: 1}, B), ({}, A)])
def test_least_connections_picks_the_least_busy(active: dict[Backend, int], first: Backend) -> None:
    pool = Pool((A, B, C), policy="least-connections")
    for backend, count in active.items():
        for _ in range(count):
            pool.opened(backend)
    assert pool.candidates()[0] == first


def test_no_backends_no_candidates() -> None:
    assert Pool().candidates() == []


# -- tally


def test_tally_counts_one_window_with_every_served_service_and_pod() -> None:
    tally = Tally("n1")
    pods = {port: Backend("127.0.0.2", port, pod=f"p{port}", pod_uid=f"u{port}") for port in (1, 2, 3)}
    for port in (1, 1, 2):
        tally.accepted(("ns", "web"))
        tally.forwarded(("ns", "web"), pods[port])
    tally.accepted(("ns", "web"))  # no backend took it
    tally.accepted(("ns", "gone"))  # counted, then its Service went
    report = tally.take({("ns", "web"): list(pods.values()), ("ns", "idle"): []})
    assert report.node == "n1" and report.window_seconds >= 0
    by_name = {s.name: s for s in report.services}
    assert set(by_name) == {"web", "idle", "gone"}
    assert by_name["web"].requests == 4
    assert [(e.pod_name, e.pod_uid, e.requests) for e in by_name["web"].endpoints] == [
        ("p1", "u1", 2),
        ("p2", "u2", 1),
        ("p3", "u3", 0),
    ]
    assert by_name["idle"].requests == 0 and by_name["idle"].endpoints == []
    assert tally.take({("ns", "web"): []}).services[0].requests == 0  # a new window


def test_ports_and_addresses_no_socket_takes_are_left_out() -> None:
    """The API should refuse them; the proxy never relies on it (binding port 70000 raised, and
    took the agent down)."""
    web = service(
        "web", ServicePort(port=70000, name="a"), ServicePort(port=80, name="b", node_port=0), type="NodePort"
    )
    ports = [EndpointPort(name="b", port=p) for p in (99999, 8080)]
    addresses = [address("p1", "127.0.0.1\x00"), address("p2", "pod.example.com"), address("p3", "127.0.0.3")]
    wanted = routes(
        [web], {("ns", "web"): endpoints("web", EndpointSubset(addresses=addresses, ports=ports))}
    )
    assert list(wanted) == [80]
    assert wanted[80][0].backends == (Backend("127.0.0.3", 8080, "p3", "uid-p3"),)
