"""Controllers never write blind: a write computed from a version that has changed since (a
`steer scale`, another controller, a leader that has not noticed it lost) is refused with a
Conflict, and the reconcile runs again on what is there now.

Against the real API. Each controller reads from an informer fed by hand (no watch runs), so
that its cache is exactly as stale as the test makes it; the change it has not seen is made
through the API between its read and its write.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar, cast

import pytest

from bus import metrics
from bus.client import Client
from bus.codec import to_builtins
from bus.errors import Conflict
from bus.informer import Informer
from bus.meta import LabelSelector, ObjectMeta, Resource
from bus.resources import Deployment, HorizontalPodAutoscaler, Pod, ReplicaSet
from bus.resources.apps import DeploymentSpec, ReplicaSetSpec, ReplicaSetStatus
from bus.resources.autoscaling import (
    CrossVersionObjectReference,
    HorizontalPodAutoscalerSpec,
    MetricSpec,
    MetricTarget,
    ResourceMetricSource,
)
from bus.resources.pod import (
    Container,
    PodCondition,
    PodSpec,
    PodStatus,
    PodTemplateSpec,
    ResourceRequirements,
)
from bus.store import Store
from services.controllers.autoscaler import AutoscalerReconciler
from services.controllers.deployment import DeploymentReconciler
from services.controllers.podmetrics import PodMetricsCache
from services.controllers.replicaset import ReplicaSetReconciler

R = TypeVar("R", bound=Resource)
LABELS = {"app": "web"}


def cache_of(cls: type[R], *objects: R) -> Informer[R]:
    informer: Informer[R] = Informer(cast(Store, None), cls)  # no watch: only what is put
    for obj in objects:
        informer.put(obj)
    return informer


def template(cpu: str = "100m") -> PodTemplateSpec:
    container = Container(name="main", image="i", resources=ResourceRequirements(requests={"cpu": cpu}))
    return PodTemplateSpec(metadata=ObjectMeta(labels=LABELS), spec=PodSpec(containers=[container]))


def replicaset(ns: str, replicas: int) -> ReplicaSet:
    return ReplicaSet(
        metadata=ObjectMeta(name="web", namespace=ns),
        spec=ReplicaSetSpec(
            replicas=replicas, selector=LabelSelector(match_labels=LABELS), template=template()
        ),
    )


class ScaleBetweenReadAndWrite(Client):
    """A client through which, right after the autoscaler reads its target, someone else
    (`steer scale`) sets the target's replicas."""

    def __init__(self, client: Client, replicas: int) -> None:
        super().__init__(client.nc, timeout=client.timeout)
        self.replicas = replicas

    async def get(self, cls: type[R], name: str, namespace: str = "default") -> R:
        found = await super().get(cls, name, namespace)
        if cls is ReplicaSet:
            await super().patch(ReplicaSet, name, {"spec": {"replicas": self.replicas}}, namespace)
        return found


async def test_the_autoscaler_never_overwrites_a_scale_made_after_its_read(client: Client, ns: str) -> None:
    await client.create(replicaset(ns, 1))
    pod = Pod(
        metadata=ObjectMeta(name="web-1", namespace=ns, labels=LABELS),
        spec=template().spec or PodSpec(),
        status=PodStatus(phase="Running", conditions=[PodCondition(type="Ready", status="True")]),
    )
    usage = PodMetricsCache()  # 200m against a 50% target of 100m: it wants 4
    usage.add_node(
        metrics.NodeMetrics(
            node="n1",
            timestamp=datetime.now(UTC),
            window_seconds=5.0,
            cpu_millicores=0,
            memory_bytes=0,
            pods=[
                metrics.PodMetrics(namespace=ns, name="web-1", uid="u", cpu_millicores=200, memory_bytes=0)
            ],
        )
    )
    cpu_50 = MetricSpec(
        type="Resource",
        resource=ResourceMetricSource(
            name="cpu", target=MetricTarget(type="Utilization", average_utilization=50)
        ),
    )
    hpa = await client.create(
        HorizontalPodAutoscaler(
            metadata=ObjectMeta(name="web", namespace=ns),
            spec=HorizontalPodAutoscalerSpec(
                scale_target_ref=CrossVersionObjectReference(kind="ReplicaSet", name="web"),
                min_replicas=1,
                max_replicas=10,
                metrics=[cpu_50],
            ),
        )
    )
    racing = ScaleBetweenReadAndWrite(client, replicas=7)
    reconciler = AutoscalerReconciler(
        racing, cache_of(HorizontalPodAutoscaler, hpa), cache_of(Pod, pod), usage, sync_period=60
    )
    with pytest.raises(Conflict):
        await reconciler.reconcile(f"{ns}/web")
    assert (await client.get(ReplicaSet, "web", ns)).spec.replicas == 7  # the user's scale stands


async def test_the_deployment_controller_never_scales_from_a_stale_replicaset(
    client: Client, ns: str
) -> None:
    deployment = await client.create(
        Deployment(
            metadata=ObjectMeta(name="web", namespace=ns),
            spec=DeploymentSpec(replicas=3, selector=LabelSelector(match_labels=LABELS), template=template()),
        )
    )
    deployments, replicasets = cache_of(Deployment, deployment), cache_of(ReplicaSet)
    reconciler = DeploymentReconciler(client, deployments, replicasets, cache_of(Pod))
    await reconciler.reconcile(f"{ns}/web")  # creates its ReplicaSet, with 3 replicas
    [owned] = await client.list(ReplicaSet, ns)
    replicasets.put(owned)
    deployments.put(await client.patch(Deployment, "web", {"spec": {"replicas": 5}}, ns))  # steer scale
    # Someone the cache has not heard of yet sets the ReplicaSet's replicas.
    name = owned.metadata.name
    await client.patch(ReplicaSet, name, {"spec": {"replicas": 8}}, ns)
    with pytest.raises(Conflict):
        await reconciler.reconcile(f"{ns}/web")
    assert (await client.get(ReplicaSet, name, ns)).spec.replicas == 8  # not overwritten unseen


async def test_a_status_judged_on_a_stale_version_is_not_written(client: Client, ns: str) -> None:
    rs = await client.create(replicaset(ns, 0))
    reconciler = ReplicaSetReconciler(client, cache_of(ReplicaSet, rs), cache_of(Pod))
    # A newer status, written by someone the cache has not heard of yet (another leader).
    newer = await client.get(ReplicaSet, "web", ns)
    newer.status = ReplicaSetStatus(replicas=0, observed_generation=newer.metadata.generation)
    written = await client.update_status(newer)
    scaled = await client.patch(ReplicaSet, "web", {"spec": {"replicas": 2}}, ns)
    assert scaled.metadata.generation > written.status.observed_generation
    with pytest.raises(Conflict):
        await reconciler.reconcile(f"{ns}/web")  # judged on generation 1, the stored one is 2
    stored = await client.get(ReplicaSet, "web", ns)
    assert stored.status == written.status
    assert stored.metadata.resource_version == scaled.metadata.resource_version


async def test_history_is_pruned_only_as_judged(client: Client, ns: str) -> None:
    """An old ReplicaSet judged empty is deleted only in that version: one scaled up since (a
    rollback) stays."""
    spec = DeploymentSpec(
        replicas=0, selector=LabelSelector(match_labels=LABELS), template=template(), revision_history_limit=0
    )
    deployment = await client.create(Deployment(metadata=ObjectMeta(name="web", namespace=ns), spec=spec))
    deployments, replicasets = cache_of(Deployment, deployment), cache_of(ReplicaSet)
    reconciler = DeploymentReconciler(client, deployments, replicasets, cache_of(Pod))
    await reconciler.reconcile(f"{ns}/web")
    [first] = await client.list(ReplicaSet, ns)
    replicasets.put(first)
    changed = await client.patch(Deployment, "web", {"spec": {"template": to_builtins(template("200m"))}}, ns)
    deployments.put(changed)
    await client.patch(ReplicaSet, first.metadata.name, {"spec": {"replicas": 2}}, ns)  # unseen
    with pytest.raises(Conflict):
        await reconciler.reconcile(f"{ns}/web")  # a new ReplicaSet; the old one looks empty
    kept = await client.get(ReplicaSet, first.metadata.name, ns)
    assert kept.metadata.deletion_timestamp is None and kept.spec.replicas == 2
