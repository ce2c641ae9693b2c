"""The HorizontalPodAutoscaler controller against the real API and bus, in the test's event loop,
with the ReplicaSet controller beside it. No node runs the pods: a stand-in marks them Running and
Ready, and a stand-in agent and proxy publish their usage on the metrics subjects (our own
protocol) at the level the test sets. Real node agents under real load: tests/system/test_autoscaling.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import cast

import pytest
from nats.aio.client import Client as NATS

from bus import metrics, subjects
from bus.client import Client
from bus.events import read
from bus.informer import Informer
from bus.meta import LabelSelector, ObjectMeta, is_true
from bus.resources import Event, HorizontalPodAutoscaler, Pod, ReplicaSet
from bus.resources.apps import ReplicaSetSpec
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
from bus.resources.pod import (
    Container,
    PodSpec,
    PodTemplateSpec,
    ResourceRequirements,
)
from bus.store import Store
from cli import columns
from services.controllers.autoscaler import autoscaler_controller
from services.controllers.podmetrics import PodMetricsCache
from services.controllers.replicaset import replicaset_controller
from tests.metricsbus import publish_node, publish_proxy
from tests.standins import mark_pods_ready
from tests.waiting import wait_for

SYNC = 0.3  # seconds between two syncs of an autoscaler (15 in production)


@pytest.fixture
async def controllers(client: Client, store: Store, nc: NATS) -> AsyncIterator[None]:
    replicasets: Informer[ReplicaSet] = Informer(store, ReplicaSet)
    pods: Informer[Pod] = Informer(store, Pod)
    hpas: Informer[HorizontalPodAutoscaler] = Informer(store, HorizontalPodAutoscaler)
    rs_control = replicaset_controller(client, replicasets, pods, workers=2)
    cache = PodMetricsCache()
    autoscaler = autoscaler_controller(client, hpas, pods, cache, sync_period=SYNC, workers=2)
    runs = (replicasets.run(), pods.run(), hpas.run(), cache.run(nc), rs_control.run(), autoscaler.run())
    tasks = [asyncio.create_task(t) for t in runs]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class Load:
    """What the stand-in agent and proxy report for every pod of the namespace."""

    cpu: int = 0  # millicores per pod
    rps: float = 0.0  # requests per second per pod
    node: str = field(default_factory=lambda: f"hpa-{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def load(client: Client, store: Store, nc: NATS, ns: str) -> AsyncIterator[Load]:
    """Stand-ins: every pod of the namespace becomes Running and Ready, and its usage is published
    every 0.2 s as a node agent and a service proxy would (window 5 s, as theirs)."""
    level = Load()

    async def publish() -> None:
        while True:
            pods = [p for p in await client.list(Pod, ns) if is_true(p.status.conditions)]
            usage = [
                metrics.PodMetrics(
                    namespace=ns,
                    name=p.metadata.name,
                    uid=p.metadata.uid,
                    cpu_millicores=level.cpu,
                    memory_bytes=1 << 20,
                )
                for p in pods
            ]
            await publish_node(nc, level.node, usage)
            endpoints = [
                metrics.EndpointRequests(pod_name=p.metadata.name, requests=round(level.rps * 5))
                for p in pods
            ]
            total = sum(e.requests for e in endpoints)
            await publish_proxy(
                nc,
                level.node,
                [metrics.ServiceRequests(namespace=ns, name="web", requests=total, endpoints=endpoints)],
            )
            await asyncio.sleep(0.2)  # a publishing interval, as an agent's; nothing waits on it

    tasks = [asyncio.create_task(mark_pods_ready(client, store, ns)), asyncio.create_task(publish())]
    yield level
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def replicaset(ns: str, replicas: int, *, cpu_request: str | None = "100m") -> ReplicaSet:
    labels = {"app": "web"}
    requests = {"cpu": cpu_request} if cpu_request else {}
    container = Container(name="main", image="i", resources=ResourceRequirements(requests=requests))
    return ReplicaSet(
        metadata=ObjectMeta(name="web", namespace=ns),
        spec=ReplicaSetSpec(
            replicas=replicas,
            selector=LabelSelector(match_labels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels), spec=PodSpec(containers=[container])
            ),
        ),
    )


CPU_50 = MetricSpec(
    type="Resource",
    resource=ResourceMetricSource(
        name="cpu", target=MetricTarget(type="Utilization", average_utilization=50)
    ),
)


def rps(target: str, name: str = "requests_per_second") -> MetricSpec:
    return MetricSpec(
        type="Pods",
        pods=PodsMetricSource(
            metric=MetricIdentifier(name=name), target=MetricTarget(type="AverageValue", average_value=target)
        ),
    )


def autoscaler(
    ns: str,
    metric_specs: list[MetricSpec],
    *,
    kind: str = "ReplicaSet",
    name: str = "web",
    min_replicas: int = 1,
    max_replicas: int = 6,
    down_window: int = 1,
) -> HorizontalPodAutoscaler:
    return HorizontalPodAutoscaler(
        metadata=ObjectMeta(name="web", namespace=ns),
        spec=HorizontalPodAutoscalerSpec(
            scale_target_ref=CrossVersionObjectReference(kind=kind, name=name, api_version="apps/v1"),
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            metrics=metric_specs,
            behavior=HorizontalPodAutoscalerBehavior(
                scale_down=HPAScalingRules(stabilization_window_seconds=down_window)
            ),
        ),
    )


def condition(hpa: HorizontalPodAutoscaler, type_: str) -> tuple[str, str, str]:
    found = next((c for c in hpa.status.conditions if c.type == type_), None)
    return (found.status, found.reason, found.message) if found else ("", "", "")


def replicas_are(count: int) -> Callable[[ReplicaSet], bool]:
    return lambda rs: rs.spec.replicas == count


async def events_of(nc: NATS, ns: str, reason: str) -> list[Event]:
    stream = read(nc.jetstream(), subject_filter=subjects.events_filter(ns, "HorizontalPodAutoscaler", "web"))
    return [e async for e in stream if e.reason == reason]


async def test_scales_up_on_cpu_then_down_when_the_load_stops(
    client: Client, store: Store, nc: NATS, ns: str, controllers: None, load: Load
) -> None:
    await client.create(replicaset(ns, 2))
    load.cpu = 150  # 150% of the 100m request, three times the 50% target
    await client.create(autoscaler(ns, [CPU_50]))

    # ceil(2 * 150 / 50) = 6, which the default rate allows at once (max(4 pods, 100%) per 15 s).
    await wait_for(store, ReplicaSet, ns, "web", replicas_are(6), within=30)
    hpa = await wait_for(
        store, HorizontalPodAutoscaler, ns, "web", lambda h: h.status.desired_replicas == 6, within=30
    )
    assert condition(hpa, "AbleToScale")[:2] == ("True", "SucceededRescale")
    assert condition(hpa, "ScalingActive")[:2] == ("True", "ValidMetricFound")
    assert hpa.status.last_scale_time is not None
    rescales = await events_of(nc, ns, "SuccessfulRescale")
    assert rescales[0].message == (
        "New size: 6; reason: cpu resource utilization (percentage of request) above target"
    )

    # At 6 pods and 150% each it would want 18: the maximum holds it.
    hpa = await wait_for(
        store,
        HorizontalPodAutoscaler,
        ns,
        "web",
        lambda h: h.status.current_replicas == 6 and condition(h, "ScalingLimited")[0] == "True",
        within=30,
    )
    assert condition(hpa, "ScalingLimited")[1] == "TooManyReplicas"
    assert hpa.status.current_metrics[0].resource is not None
    assert hpa.status.current_metrics[0].resource.current.average_utilization == 150
    assert columns.row(hpa, wide=False, all_namespaces=False)[:6] == [
        "web",
        "ReplicaSet/web",
        "cpu: 150%/50%",
        "1",
        "6",
        "6",
    ]

    load.cpu = 5  # the load stops: after the 1 s stabilization window, down to the minimum
    await wait_for(store, ReplicaSet, ns, "web", replicas_are(1), within=30)
    hpa = await wait_for(
        store, HorizontalPodAutoscaler, ns, "web", lambda h: h.status.desired_replicas == 1, within=30
    )
    rescales = await events_of(nc, ns, "SuccessfulRescale")
    assert rescales[-1].message == "New size: 1; reason: All metrics below target"


async def test_scales_on_requests_per_second_from_the_proxies(
    client: Client, store: Store, ns: str, controllers: None, load: Load
) -> None:
    await client.create(replicaset(ns, 1, cpu_request=None))  # no request: the CPU rule could not run
    load.rps = 25.0
    await client.create(autoscaler(ns, [rps("10")], max_replicas=10))
    # ceil(1 * 25 / 10) = 3; then 3 pods at 25 rps each ask for 8, and so on up to the maximum.
    await wait_for(store, ReplicaSet, ns, "web", lambda rs: rs.spec.replicas >= 3, within=30)
    hpa = await wait_for(store, HorizontalPodAutoscaler, ns, "web", lambda h: _average(h) == "25", within=30)
    current = hpa.status.current_metrics[0]
    assert current.type == "Pods" and current.pods is not None
    assert current.pods.metric.name == "requests_per_second" and current.pods.current.average_value == "25"
    assert columns.row(hpa, wide=False, all_namespaces=False)[2] == "requests_per_second: 25/10"

    load.rps = 10.0  # on target: nothing changes...
    hpa = await wait_for(store, HorizontalPodAutoscaler, ns, "web", lambda h: _average(h) == "10", within=30)
    steady = hpa.status.current_replicas
    load.rps = 2.0  # ...until the traffic falls
    await wait_for(store, ReplicaSet, ns, "web", lambda rs: rs.spec.replicas < steady, within=30)


def _average(hpa: HorizontalPodAutoscaler) -> str:
    metric = hpa.status.current_metrics[0] if hpa.status.current_metrics else None
    return metric.pods.current.average_value if metric and metric.pods else ""


async def test_a_missing_target_is_reported(
    client: Client, store: Store, nc: NATS, ns: str, controllers: None
) -> None:
    await client.create(autoscaler(ns, [CPU_50], kind="Deployment", name="nope"))
    hpa = await wait_for(
        store,
        HorizontalPodAutoscaler,
        ns,
        "web",
        lambda h: condition(h, "AbleToScale")[0] == "False",
        within=30,
    )
    status, reason, message = condition(hpa, "AbleToScale")
    assert reason == "FailedGetScale"
    assert message.startswith("the HPA controller was unable to get the target's current scale:")
    assert "nope" in message and "not found" in message
    warnings = await events_of(nc, ns, "FailedGetScale")
    assert len(warnings) == 1 and warnings[0].type == "Warning"

    hpa.spec.scale_target_ref.kind = "StatefulSet"  # not one we can scale
    await client.update(hpa)
    await wait_for(
        store,
        HorizontalPodAutoscaler,
        ns,
        "web",
        lambda h: "StatefulSet cannot be scaled" in condition(h, "AbleToScale")[2],
        within=30,
    )


async def test_metrics_that_cannot_be_computed(
    client: Client, store: Store, nc: NATS, ns: str, controllers: None, load: Load
) -> None:
    await client.create(replicaset(ns, 2, cpu_request=None))
    load.cpu = 100
    await client.create(autoscaler(ns, [CPU_50]))
    hpa = await wait_for(
        store,
        HorizontalPodAutoscaler,
        ns,
        "web",
        lambda h: "missing request" in condition(h, "ScalingActive")[2],
        within=30,
    )
    status, reason, message = condition(hpa, "ScalingActive")
    assert (status, reason) == ("False", "FailedGetResourceMetric")
    assert message.startswith("missing request for cpu in container main of Pod web-")
    warnings = await events_of(nc, ns, "FailedGetResourceMetric")
    assert warnings[-1].type == "Warning" and warnings[-1].message == message
    assert (await client.get(ReplicaSet, "web", ns)).spec.replicas == 2  # left alone

    hpa.spec.metrics = [rps("1", name="queue_length")]
    await client.update(hpa)
    hpa = await wait_for(
        store,
        HorizontalPodAutoscaler,
        ns,
        "web",
        lambda h: condition(h, "ScalingActive")[1] == "FailedGetPodsMetric",
        within=30,
    )
    assert "unable to get metric queue_length: no source serves it" in condition(hpa, "ScalingActive")[2]


async def test_no_scale_down_while_a_metric_is_unknown(
    client: Client, store: Store, ns: str, controllers: None, load: Load
) -> None:
    await client.create(replicaset(ns, 3))
    load.cpu = 5  # CPU alone would want 1 replica
    await client.create(autoscaler(ns, [CPU_50, rps("1", name="queue_length")]))
    hpa = await wait_for(
        store,
        HorizontalPodAutoscaler,
        ns,
        "web",
        lambda h: _utilization(h) == 5 and condition(h, "ScalingActive")[1] == "FailedGetPodsMetric",
        within=30,
    )
    assert hpa.status.desired_replicas == 3
    assert (await client.get(ReplicaSet, "web", ns)).spec.replicas == 3
    # One status per metric, in the spec's order: the unknown one is empty.
    assert [m.type for m in hpa.status.current_metrics] == ["Resource", "Pods"]
    assert columns.row(hpa, wide=False, all_namespaces=False)[2] == "cpu: 5%/50%, queue_length: <unknown>/1"


def _utilization(hpa: HorizontalPodAutoscaler) -> int | None:
    metric = hpa.status.current_metrics[0] if hpa.status.current_metrics else None
    return metric.resource.current.average_utilization if metric and metric.resource else None


def test_a_failing_sync_is_retried_no_later_than_the_next_sync() -> None:
    """A Conflict or an API away makes a sync fail: retried soon, but not after an ever longer
    back-off (Kubernetes requeues every autoscaler each period, error or not)."""
    hpas: Informer[HorizontalPodAutoscaler] = Informer(cast(Store, None), HorizontalPodAutoscaler)
    pods: Informer[Pod] = Informer(cast(Store, None), Pod)
    controller = autoscaler_controller(cast(Client, None), hpas, pods, PodMetricsCache(), sync_period=15)
    assert [controller.queue.backoff.delay(failures) for failures in (0, 20, 60)] == [0.005, 15, 15]
