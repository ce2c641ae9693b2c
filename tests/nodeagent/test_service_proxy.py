"""The service proxy inside a real node agent process, against the real API: it learns Services
and Endpoints through its node-scoped reads and the API's feed, listens on the node's address,
follows changes live, reports a port it cannot bind, and publishes request counts.

The backends are plain TCP servers in the test process and the Endpoints are written here, as
the endpoints controller writes them (no controller runs in this session). The tests follow the
proxy through the reports it publishes every 0.3 s.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bus import subjects
from bus.client import Client
from bus.errors import Forbidden
from bus.meta import ObjectMeta, ObjectReference
from bus.resources import Endpoints, Event, Service
from bus.resources.networking import EndpointAddress, EndpointPort, EndpointSubset, ServicePort, ServiceSpec
from bus.store import Store
from nodeagent.proxy.routes import Backend
from tests.agents import AgentProcess, StartAgent
from tests.nodeagent.tcp import ask, backends, closed, echo, naming
from tests.proxyreports import ProxyReports, proxy_reports
from tests.waiting import wait_for_all

# Every agent of the session serves every Service of the session: each test takes its own ports.
_ports = itertools.count(18000)


@pytest.fixture
def port() -> int:
    return next(_ports)


@pytest.fixture
async def agent(start_agent: StartAgent) -> AgentProcess:
    started: AgentProcess = await start_agent("fake", extra=("--metrics-interval", "0.3"))
    return started


@pytest.fixture
async def reports(nc: Any, agent: AgentProcess) -> AsyncIterator[ProxyReports]:
    async with proxy_reports(nc, agent.name) as reports:
        yield reports


def service(ns: str, name: str, port: int) -> Service:
    ports = [ServicePort(name="http", port=port, target_port="http")]
    return Service(
        metadata=ObjectMeta(name=name, namespace=ns), spec=ServiceSpec(ports=ports, selector={"a": name})
    )


def endpoints(ns: str, name: str, found: list[Backend]) -> Endpoints:
    """One subset per backend (each has its own host port), as the endpoints controller writes them."""
    subsets = [
        EndpointSubset(
            addresses=[
                EndpointAddress(ip=b.ip, target_ref=ObjectReference(kind="Pod", name=b.pod, uid=b.pod_uid))
            ],
            ports=[EndpointPort(name="http", port=b.port)],
        )
        for b in found
    ]
    return Endpoints(metadata=ObjectMeta(name=name, namespace=ns), subsets=subsets)


async def test_a_node_reads_services_and_endpoints_but_cannot_write_them(
    nc: Any, client: Client, ns: str, port: int
) -> None:
    await client.create(service(ns, "web", port))
    node = Client(nc, node="n-reader")
    listed = await node.list(Service, subjects.ALL)
    assert [s.metadata.name for s in listed if s.metadata.namespace == ns] == ["web"]
    assert (await node.get(Service, "web", ns)).spec.ports[0].port == port
    assert await node.list(Endpoints, ns) == []
    with pytest.raises(Forbidden):
        await node.create(service(ns, "mine", port))
    with pytest.raises(Forbidden):
        await node.create(endpoints(ns, "web", []))


async def test_a_service_is_balanced_over_its_endpoints_on_the_node_address(
    agent: AgentProcess, reports: ProxyReports, client: Client, ns: str, port: int
) -> None:
    async with backends(naming("a"), naming("b"), naming("c")) as found:
        await client.create(service(ns, "web", port))
        await client.create(endpoints(ns, "web", found))
        await reports.serving(ns, "web", {"pod-0", "pod-1", "pod-2"})
        answers = Counter([await ask(port, agent.address) for _ in range(30)])
        assert answers == {"a": 10, "b": 10, "c": 10}
        per_pod = await reports.counted(ns, "web", 30)
    assert per_pod == {"pod-0": 10, "pod-1": 10, "pod-2": 10}


async def test_endpoint_changes_are_followed_without_dropping_open_connections(
    agent: AgentProcess, reports: ProxyReports, client: Client, ns: str, port: int
) -> None:
    async with backends(echo, naming("next")) as found:
        await client.create(service(ns, "live", port))
        await client.create(endpoints(ns, "live", found[:1]))
        await reports.serving(ns, "live", {"pod-0"})
        reader, writer = await asyncio.open_connection(agent.address, port)
        writer.write(b"before")
        assert await reader.readexactly(6) == b"before"
        await client.patch(Endpoints, "live", {"subsets": _subsets_json(found[1:])}, ns)
        await reports.serving(ns, "live", {"pod-1"})
        assert await ask(port, agent.address) == "next"
        writer.write(b"after")  # the open connection still reaches the endpoint it had
        assert await reader.readexactly(5) == b"after"
        await closed(writer)
        await client.delete(Service, "live", ns)
        await reports.gone(ns, "live")
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(agent.address, port)


def _subsets_json(found: list[Backend]) -> list[dict[str, Any]]:
    return [
        {
            "addresses": [{"ip": b.ip, "targetRef": {"kind": "Pod", "name": b.pod}}],
            "ports": [{"name": "http", "port": b.port}],
        }
        for b in found
    ]


async def test_a_port_in_use_is_a_warning_and_other_services_are_served(
    agent: AgentProcess, reports: ProxyReports, client: Client, store: Store, ns: str, port: int
) -> None:
    other = next(_ports)
    squatter = socket.socket()
    squatter.bind((agent.address, port))
    squatter.listen()
    try:
        async with backends(naming("busy"), naming("free")) as found:
            await client.create(service(ns, "busy", port))
            await client.create(endpoints(ns, "busy", found[:1]))
            await client.create(service(ns, "free", other))
            await client.create(endpoints(ns, "free", found[1:]))
            events = await wait_for_all(
                store, Event, ns, lambda events: any(e.reason == "FailedToBindPort" for e in events)
            )
            [warning] = [e for e in events if e.reason == "FailedToBindPort"]
            assert warning.type == "Warning" and warning.involved_object.name == "busy"
            assert f"{agent.address}:{port}" in warning.message
            await reports.serving(ns, "free", {"pod-1"})
            assert await ask(other, agent.address) == "free"
            squatter.close()  # the port is free: the next re-sync (every 5 s here) takes it
            await reports.serving(ns, "busy", {"pod-0"})
            assert await ask(port, agent.address) == "busy"
    finally:
        squatter.close()
