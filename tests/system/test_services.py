"""Services on a whole cluster of real processes and three Docker node agents: the endpoints
controller keeps each Service's ready endpoints, every node agent's proxy balances connections
over them, and containers find Services through their environment.

Each replica of the test Deployments is busybox httpd serving its own pod name, so an answer
tells which replica served it. The tests share one cluster and each uses its own namespace and
its own Service ports (every node's proxy serves every Service of the cluster). They follow
each proxy through the request counts it publishes every half second (tests/proxyreports.py).
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest

from bus.client import Client
from bus.meta import ObjectMeta, is_true
from bus.resources import Deployment, Endpoints, Node, Pod, Service
from bus.resources.networking import ServicePort, ServiceSpec
from bus.resources.pod import Container, PodSpec
from bus.store import Store
from tests.agents import node_ready
from tests.cluster import ControlPlane
from tests.nodeagent.conftest import IMAGE
from tests.proxyreports import ProxyReports, proxy_reports
from tests.system.test_workloads import containers_of, docker, httpd, rolled_out, steer
from tests.waiting import wait_for

pytestmark = pytest.mark.usefixtures("docker_engine")

NODES = 3


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[ControlPlane]:
    with ControlPlane.running(tmp_path_factory.mktemp("services")) as plane:
        plane.start_scheduler()
        plane.start_controllers()
        for _ in range(NODES):
            plane.start_agent("docker", "--lease", "4,1", "--metrics-interval", "0.5")
        yield plane


@pytest.fixture
async def cluster(plane: ControlPlane) -> AsyncIterator[tuple[Client, Store, str, ProxyReports]]:
    async with plane.connect() as (client, store):
        for agent in plane.agents:
            await wait_for(store, Node, "", agent.name, node_ready)
        async with proxy_reports(client.nc) as reports:
            yield client, store, await plane.namespace(client), reports


def service(ns: str, name: str, port: int, node_port: int | None = None) -> Service:
    ports = [ServicePort(name="http", port=port, target_port="http", node_port=node_port)]
    spec = ServiceSpec(ports=ports, selector={"app": name}, type="NodePort" if node_port else "ClusterIP")
    return Service(metadata=ObjectMeta(name=name, namespace=ns), spec=spec)


async def deployed(client: Client, store: Store, ns: str, name: str, replicas: int) -> set[str]:
    """Deploy the httpd replicas; the names of the pods once they are all ready."""
    await client.create(httpd(ns, name, replicas))
    await wait_for(store, Deployment, ns, name, rolled_out(), within=120)
    pods = await client.list(Pod, ns, label_selector=f"app={name}")
    serving = [p for p in pods if is_true(p.status.conditions) and not p.metadata.deletion_timestamp]
    ready = {p.metadata.name for p in serving}
    assert len(ready) == replicas, ready
    return ready


async def served_everywhere(
    plane: ControlPlane, reports: ProxyReports, ns: str, name: str, pods: set[str]
) -> None:
    """Until every node's proxy balances the Service over exactly `pods`."""
    await reports.serving_on({agent.name for agent in plane.agents}, ns, name, pods)


def fetch(host: str, port: int) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/", timeout=5) as response:  # noqa: S310 (loopback)
        return str(response.read().decode()).strip()


async def fetch_many(hosts: list[str], port: int, count: int) -> Counter[str]:
    """`count` requests, spread over the given node addresses in turn; who answered each."""

    def run() -> Counter[str]:
        return Counter(fetch(hosts[i % len(hosts)], port) for i in range(count))

    return await asyncio.to_thread(run)


async def test_requests_through_a_service_spread_evenly_over_its_replicas(
    plane: ControlPlane, cluster: tuple[Client, Store, str, ProxyReports]
) -> None:
    client, store, ns, reports = cluster
    await client.create(service(ns, "web", 18080, node_port=30080))
    pods = await deployed(client, store, ns, "web", 3)
    await served_everywhere(plane, reports, ns, "web", pods)
    answers = await fetch_many([agent.address for agent in plane.agents], 18080, 300)
    assert set(answers) == pods
    assert max(answers.values()) / min(answers.values()) <= 1.2, answers
    by_node_port = await fetch_many([plane.agents[0].address], 30080, 30)
    assert by_node_port == {name: 10 for name in pods}


async def test_a_replica_that_fails_readiness_gets_no_traffic(
    plane: ControlPlane, cluster: tuple[Client, Store, str, ProxyReports]
) -> None:
    client, store, ns, reports = cluster
    await client.create(service(ns, "ready", 18081))
    pods = await deployed(client, store, ns, "ready", 3)
    await served_everywhere(plane, reports, ns, "ready", pods)
    sick = sorted(pods)[0]
    [container] = await containers_of(await client.get(Pod, sick, ns))
    await docker("exec", container, "rm", "www/index.html")  # its readiness probe (GET /) now fails
    await wait_for(store, Pod, ns, sick, lambda p: not is_true(p.status.conditions), within=30)
    endpoints = await wait_for(store, Endpoints, ns, "ready", lambda e: _not_ready(e) == {sick}, within=30)
    assert _ready(endpoints) == pods - {sick}
    await served_everywhere(plane, reports, ns, "ready", pods - {sick})
    answers = await fetch_many([agent.address for agent in plane.agents], 18081, 60)
    assert set(answers) == pods - {sick}, answers


def _ready(endpoints: Endpoints) -> set[str]:
    return {a.target_ref.name for s in endpoints.subsets for a in s.addresses if a.target_ref}


def _not_ready(endpoints: Endpoints) -> set[str]:
    return {a.target_ref.name for s in endpoints.subsets for a in s.not_ready_addresses if a.target_ref}


async def test_a_pod_reaches_another_service_through_its_environment(
    plane: ControlPlane, cluster: tuple[Client, Store, str, ProxyReports]
) -> None:
    client, store, ns, reports = cluster
    await client.create(service(ns, "backend", 18082))
    pods = await deployed(client, store, ns, "backend", 2)
    await served_everywhere(plane, reports, ns, "backend", pods)
    # Started after the Service exists: its env names the Service's host and port.
    call = "wget -q -O - http://$BACKEND_SERVICE_HOST:$BACKEND_SERVICE_PORT/"
    caller = Pod(
        metadata=ObjectMeta(name="caller", namespace=ns),
        spec=PodSpec(
            restart_policy="Never",
            containers=[Container(name="main", image=IMAGE, command=["sh", "-c", call])],
        ),
    )
    await client.create(caller)
    done = await wait_for(
        store, Pod, ns, "caller", lambda p: p.status.phase in ("Succeeded", "Failed"), within=60
    )
    logs = await asyncio.to_thread(steer, plane, "logs", "caller", "-n", ns)
    assert done.status.phase == "Succeeded", logs.stdout + logs.stderr
    assert logs.stdout.strip() in pods
