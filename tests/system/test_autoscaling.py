"""Autoscaling on a whole cluster of real processes: two Docker node agents publish the real CPU
use of their containers and their proxies the requests they forward, `steer top` shows the
usage, and the autoscaler scales a Deployment up under load and back down once the load stops.

The autoscaler goes by when samples arrive, never by the clocks that stamped them: the CPU test
starts with every node's last sample stamped ten minutes ahead, as after a time sync that stepped
the machine's clock back (a fresh machine's), and must scale all the same.

CPU load is busybox burning CPU while a flag file exists in its container, capped by a CPU limit
(200m against a 100m request: 200% of the request) so that the test costs the machine little;
`steer exec` removes the flags to stop it. Request load is the test sending HTTP requests to a
Service through a node's proxy, at about 20 per second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bus.client import Client
from bus.meta import LabelSelector, ObjectMeta, is_true
from bus.resources import Deployment, HorizontalPodAutoscaler, Node, Pod, Service
from bus.resources.apps import DeploymentSpec
from bus.resources.autoscaling import (
    CrossVersionObjectReference,
    HorizontalPodAutoscalerBehavior,
    HorizontalPodAutoscalerSpec,
    HPAScalingRules,
    MetricIdentifier,
    MetricSpec,
    MetricTarget,
    PodsMetricSource,
    ResourceMetricSource,
)
from bus.resources.networking import ServicePort, ServiceSpec
from bus.resources.pod import Container, PodSpec, PodTemplateSpec, ResourceRequirements
from bus.store import Store
from tests.agents import node_ready
from tests.cluster import ControlPlane
from tests.metricsbus import publish_node
from tests.nodeagent.conftest import IMAGE
from tests.system.test_workloads import httpd, steer
from tests.waiting import wait_for, wait_for_all

pytestmark = pytest.mark.usefixtures("docker_engine")

BURN = "touch /tmp/burn; while :; do while [ -f /tmp/burn ]; do :; done; sleep 1; done"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[ControlPlane]:
    with ControlPlane.running(tmp_path_factory.mktemp("autoscaling")) as plane:
        plane.start_scheduler()
        plane.start_controllers("--hpa-sync-period", "1")
        for _ in range(2):
            plane.start_agent("docker", "--lease", "4,1", "--metrics-interval", "1")
        yield plane


@pytest.fixture
async def cluster(plane: ControlPlane) -> AsyncIterator[tuple[Client, Store, str]]:
    async with plane.connect() as (client, store):
        for agent in plane.agents:
            await wait_for(store, Node, "", agent.name, node_ready)
        yield client, store, await plane.namespace(client)


def burner(ns: str) -> Deployment:
    labels = {"app": "burner"}
    container = Container(
        name="main",
        image=IMAGE,
        command=["sh", "-c", BURN],
        resources=ResourceRequirements(requests={"cpu": "100m"}, limits={"cpu": "200m"}),
    )
    spec = PodSpec(containers=[container], termination_grace_period_seconds=1)
    return Deployment(
        metadata=ObjectMeta(name="burner", namespace=ns),
        spec=DeploymentSpec(
            replicas=1,
            selector=LabelSelector(match_labels=labels),
            template=PodTemplateSpec(metadata=ObjectMeta(labels=labels), spec=spec),
        ),
    )


def autoscaler(ns: str, name: str, metric: MetricSpec) -> HorizontalPodAutoscaler:
    return HorizontalPodAutoscaler(
        metadata=ObjectMeta(name=name, namespace=ns),
        spec=HorizontalPodAutoscalerSpec(
            scale_target_ref=CrossVersionObjectReference(kind="Deployment", name=name, api_version="apps/v1"),
            min_replicas=1,
            max_replicas=3,
            metrics=[metric],
            behavior=HorizontalPodAutoscalerBehavior(
                scale_down=HPAScalingRules(stabilization_window_seconds=3)
            ),
        ),
    )


CPU_50 = MetricSpec(
    type="Resource",
    resource=ResourceMetricSource(
        name="cpu", target=MetricTarget(type="Utilization", average_utilization=50)
    ),
)
RPS_5 = MetricSpec(
    type="Pods",
    pods=PodsMetricSource(
        metric=MetricIdentifier(name="requests_per_second"),
        target=MetricTarget(type="AverageValue", average_value="5"),
    ),
)


def running(pods: list[Pod], count: int) -> bool:
    live = [p for p in pods if p.metadata.deletion_timestamp is None]
    return len(live) == count and all(
        p.status.phase == "Running" and is_true(p.status.conditions) for p in live
    )


async def test_cpu_load_scales_a_deployment_up_and_back_down(
    plane: ControlPlane, cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = cluster
    # A fresh machine may have its clock stepped back once its time is synced, after the agents
    # started: each agent's last sample before the step is stamped later than every one it
    # publishes after. Publishing such a sample ourselves, ten minutes ahead, makes it so: the
    # autoscaler must go by when samples arrive, not by their stamps, to see the load at all.
    ahead = datetime.now(UTC) + timedelta(minutes=10)
    for agent in plane.agents:
        await publish_node(client.nc, agent.name, [], timestamp=ahead)
    await client.create(burner(ns))
    await client.create(autoscaler(ns, "burner", CPU_50))

    # One pod at ~200% of its request against a 50% target wants 4: the maximum, 3, it is.
    await wait_for(store, Deployment, ns, "burner", lambda d: d.spec.replicas == 3, within=90)
    await wait_for_all(store, Pod, ns, lambda pods: running(pods, 3), within=90)
    hpa = await client.get(HorizontalPodAutoscaler, "burner", ns)
    assert hpa.status.last_scale_time is not None

    top = steer(plane, "top", "pods", "-n", ns)
    assert top.returncode == 0, top.stderr
    rows = [line.split() for line in top.stdout.splitlines()[1:]]
    assert rows and all(int(cpu.removesuffix("m")) > 0 for _, cpu, _ in rows), top.stdout
    nodes = steer(plane, "top", "nodes")
    assert {line.split()[0] for line in nodes.stdout.splitlines()[1:]} == {a.name for a in plane.agents}
    hpas = steer(plane, "get", "hpa", "-n", ns)
    assert hpas.returncode == 0 and "Deployment/burner" in hpas.stdout and "/50%" in hpas.stdout, hpas.stdout

    # The load stops: after the 3 s stabilization window, back to the minimum.
    for pod in await client.list(Pod, ns):
        done = steer(plane, "exec", "-n", ns, pod.metadata.name, "--", "rm", "-f", "/tmp/burn")
        assert done.returncode == 0 or "NotFound" in done.stderr, done.stderr  # gone: burns no more
    await wait_for(store, Deployment, ns, "burner", lambda d: d.spec.replicas == 1, within=90)
    hpa = await wait_for(
        store,
        HorizontalPodAutoscaler,
        ns,
        "burner",
        lambda h: h.status.desired_replicas == 1 and bool(h.status.current_metrics),
        within=30,
    )
    metric = hpa.status.current_metrics[0].resource
    assert metric is not None and metric.current.average_utilization is not None
    assert metric.current.average_utilization < 45


async def test_request_rate_through_the_proxy_scales_a_deployment(
    plane: ControlPlane, cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = cluster
    port = 18090
    spec = ServiceSpec(
        ports=[ServicePort(name="http", port=port, target_port="http")], selector={"app": "web"}
    )
    await client.create(Service(metadata=ObjectMeta(name="web", namespace=ns), spec=spec))
    await client.create(httpd(ns, "web", 1))
    await client.create(autoscaler(ns, "web", RPS_5))
    await wait_for_all(store, Pod, ns, lambda pods: running(pods, 1), within=90)

    # About 20 requests a second through one node's proxy, four times the target per pod.
    sending = asyncio.create_task(_requests(plane.agents[0].address, port, per_second=20))
    try:
        await wait_for(store, Deployment, ns, "web", lambda d: d.spec.replicas == 3, within=90)
        hpa = await wait_for(
            store, HorizontalPodAutoscaler, ns, "web", lambda h: h.status.desired_replicas == 3, within=30
        )
        assert float(_average(hpa).removesuffix("m")) > 0
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
    await wait_for(store, Deployment, ns, "web", lambda d: d.spec.replicas == 1, within=90)
    hpa = await wait_for(store, HorizontalPodAutoscaler, ns, "web", lambda h: _average(h) == "0", within=30)


def _average(hpa: HorizontalPodAutoscaler) -> str:
    metric = hpa.status.current_metrics[0] if hpa.status.current_metrics else None
    return metric.pods.current.average_value if metric and metric.pods else ""


async def _requests(host: str, port: int, *, per_second: float) -> None:
    """HTTP GETs at a steady pace until cancelled (a refused or failed one is just load lost)."""
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), 0
    while True:
        with contextlib.suppress(OSError):
            await _get(host, port)
        sent += 1
        await asyncio.sleep(max(start + sent / per_second - loop.time(), 0))  # the pace of the load


async def _get(host: str, port: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        await reader.read()
    finally:
        writer.close()
