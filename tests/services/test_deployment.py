"""The Deployment controller against the real API, with the ReplicaSet controller beside it, both in
the test's event loop. No node runs the pods: a small stand-in for the node agents marks each new
pod Running and Ready (unless its image is "broken"), so that rollouts can be followed step by step.
Containers on real nodes are covered by tests/test_workloads.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bus import subjects
from bus.client import Client
from bus.controller import Controller
from bus.errors import Invalid
from bus.events import now, read
from bus.informer import Informer
from bus.meta import LabelSelector, ObjectMeta, is_true
from bus.resources import Deployment, Pod, ReplicaSet
from bus.resources.apps import DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment
from bus.resources.pod import Container, PodSpec, PodTemplateSpec
from bus.store import Store
from bus.workloads import REVISION, controller_of
from services.controllers import rollout
from services.controllers.deployment import DeploymentReconciler, deployment_keys, orphan_keys
from services.controllers.replicaset import replicaset_controller
from tests.standins import mark_pods_ready
from tests.waiting import wait_for

BROKEN = "broken"


@pytest.fixture
async def controllers(client: Client, store: Store) -> AsyncIterator[None]:
    replicasets: Informer[ReplicaSet] = Informer(store, ReplicaSet)
    pods: Informer[Pod] = Informer(store, Pod)
    deployments: Informer[Deployment] = Informer(store, Deployment)
    rs_control = replicaset_controller(client, replicasets, pods, workers=2)
    d_control = Controller(
        "deployment", DeploymentReconciler(client, deployments, replicasets, pods), workers=2
    )
    d_control.watch(deployments)
    d_control.watch(replicasets, deployment_keys(replicasets))
    d_control.watch(replicasets, orphan_keys(deployments))
    d_control.watch(pods, deployment_keys(replicasets))
    runs = (replicasets.run(), pods.run(), deployments.run(), rs_control.run(), d_control.run())
    tasks = [asyncio.create_task(t) for t in runs]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def nodes(client: Client, store: Store, ns: str) -> AsyncIterator[None]:
    """Stand-in node agents: every new pod of the namespace becomes Running and Ready."""

    def broken(pod: Pod) -> bool:
        return pod.spec.containers[0].image == BROKEN

    task = asyncio.create_task(mark_pods_ready(client, store, ns, unless=broken))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def web(ns: str, replicas: int = 3, *, image: str = "busybox:1", **spec: Any) -> Deployment:
    labels = {"app": "web"}
    return Deployment(
        metadata=ObjectMeta(name="web", namespace=ns),
        spec=DeploymentSpec(
            replicas=replicas,
            selector=LabelSelector(match_labels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels),
                spec=PodSpec(containers=[Container(name="c", image=image)]),
            ),
            **spec,
        ),
    )


def condition(d: Deployment, type_: str) -> tuple[str, str]:
    found = next((c for c in d.status.conditions if c.type == type_), None)
    return (found.status, found.reason) if found else ("", "")


def rolled_out(d: Deployment) -> bool:
    return condition(d, "Progressing") == ("True", "NewReplicaSetAvailable") and (
        d.status.observed_generation == d.metadata.generation
    )


def generation_rolled_out(generation: int) -> Callable[[Deployment], bool]:
    return lambda d: rolled_out(d) and d.metadata.generation == generation


async def set_image(client: Client, ns: str, image: str) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}
    await client.patch(Deployment, "web", patch, ns)


async def test_a_deployment_runs_its_replicas_through_a_replicaset(
    client: Client, store: Store, ns: str, controllers: Any, nodes: Any
) -> None:
    created = await client.create(web(ns, 3))
    done = await wait_for(store, Deployment, ns, "web", rolled_out)
    assert (done.status.replicas, done.status.ready_replicas, done.status.available_replicas) == (3, 3, 3)
    assert condition(done, "Available") == ("True", "MinimumReplicasAvailable")
    assert done.metadata.annotations[REVISION] == "1"
    [rs] = await client.list(ReplicaSet, ns)
    assert rs.metadata.name == f"web-{rs.metadata.labels[rollout.HASH_LABEL]}"
    assert controller_of(rs).uid == created.metadata.uid  # type: ignore[union-attr]
    assert rs.spec.selector.match_labels[rollout.HASH_LABEL] == rs.metadata.labels[rollout.HASH_LABEL]
    pods = await client.list(Pod, ns)
    assert len(pods) == 3
    assert all(p.metadata.labels[rollout.HASH_LABEL] == rs.metadata.labels[rollout.HASH_LABEL] for p in pods)


async def test_rolling_update_keeps_the_ready_count_with_max_unavailable_zero(
    client: Client, store: Store, ns: str, controllers: Any, nodes: Any
) -> None:
    strategy = DeploymentStrategy(rolling_update=RollingUpdateDeployment(max_surge=1, max_unavailable=0))
    await client.create(web(ns, 4, strategy=strategy))
    first = await wait_for(store, Deployment, ns, "web", rolled_out)
    lowest, highest = 4, 0
    synced = asyncio.Event()

    async def watch_counts() -> None:
        nonlocal lowest, highest
        ready: dict[str, bool] = {}
        async with contextlib.aclosing(store.watch(Pod, ns)) as events:
            async for event in events:
                pod = event.object
                if pod is None and event.type == "SYNCED":
                    synced.set()
                if pod is None:
                    continue
                live = event.type != "DELETED" and pod.metadata.deletion_timestamp is None
                ready[pod.metadata.name] = live and is_true(pod.status.conditions)
                if not live:
                    del ready[pod.metadata.name]
                if synced.is_set():
                    lowest = min(lowest, sum(ready.values()))
                    highest = max(highest, len(ready))

    watcher = asyncio.create_task(watch_counts())
    await synced.wait()
    await set_image(client, ns, "busybox:2")
    done = await wait_for(
        store,
        Deployment,
        ns,
        "web",
        lambda d: rolled_out(d) and d.metadata.generation > first.metadata.generation,
    )
    watcher.cancel()
    assert lowest >= 4, f"ready pods fell to {lowest}"
    assert highest <= 5, f"{highest} pods at once with maxSurge 1"
    assert done.metadata.annotations[REVISION] == "2"
    replicasets = {rs.metadata.annotations[REVISION]: rs for rs in await client.list(ReplicaSet, ns)}
    assert (replicasets["1"].spec.replicas, replicasets["2"].spec.replicas) == (0, 4)
    filter_ = subjects.events_filter(ns, "Deployment", "web")
    async with asyncio.timeout(10):
        async for event in read(client.nc.jetstream(), subject_filter=filter_, follow=True):
            if event.reason == "ScalingReplicaSet" and event.message.startswith("Scaled down replica set"):
                break


async def test_recreate_stops_every_old_pod_before_starting_new_ones(
    client: Client, store: Store, ns: str, controllers: Any, nodes: Any
) -> None:
    await client.create(web(ns, 3, strategy=DeploymentStrategy(type="Recreate")))
    await wait_for(store, Deployment, ns, "web", rolled_out)
    old_pods = {p.metadata.name for p in await client.list(Pod, ns)}
    old_alive_when_new_created: list[int] = []
    alive = set(old_pods)

    async def watch_pods() -> None:
        async with contextlib.aclosing(store.watch(Pod, ns)) as events:
            async for event in events:
                pod = event.object
                if pod is None or event.type == "SYNCED":
                    continue
                if event.type == "DELETED":
                    alive.discard(pod.metadata.name)
                elif event.type == "ADDED" and pod.metadata.name not in old_pods:
                    old_alive_when_new_created.append(len(alive))

    watcher = asyncio.create_task(watch_pods())
    await set_image(client, ns, "busybox:2")
    await wait_for(store, Deployment, ns, "web", lambda d: rolled_out(d) and d.metadata.generation > 1)
    watcher.cancel()
    assert len(old_alive_when_new_created) == 3
    assert set(old_alive_when_new_created) == {0}


async def test_a_stuck_rollout_exceeds_its_deadline(
    client: Client, store: Store, ns: str, controllers: Any, nodes: Any
) -> None:
    await client.create(web(ns, 2, progress_deadline_seconds=2))
    await wait_for(store, Deployment, ns, "web", rolled_out)
    await set_image(client, ns, BROKEN)
    stuck = await wait_for(
        store,
        Deployment,
        ns,
        "web",
        lambda d: condition(d, "Progressing") == ("False", "ProgressDeadlineExceeded"),
    )
    assert condition(stuck, "Available") == ("True", "MinimumReplicasAvailable")  # old pods still serve
    assert stuck.status.available_replicas == 2
    await set_image(client, ns, "busybox:1")  # back to the old template: its ReplicaSet is new again
    back = await wait_for(
        store, Deployment, ns, "web", lambda d: rolled_out(d) and d.metadata.generation == 3
    )
    assert back.metadata.annotations[REVISION] == "3"
    replicasets = await client.list(ReplicaSet, ns)
    assert sorted(rs.spec.replicas for rs in replicasets) == [0, 2]


async def test_history_is_pruned_to_the_limit(
    client: Client, store: Store, ns: str, controllers: Any, nodes: Any
) -> None:
    await client.create(web(ns, 1, revision_history_limit=1))
    await wait_for(store, Deployment, ns, "web", generation_rolled_out(1))
    for generation, image in enumerate(("busybox:2", "busybox:3", "busybox:4"), start=2):
        await set_image(client, ns, image)
        await wait_for(store, Deployment, ns, "web", generation_rolled_out(generation))
    kept = await replicasets_until(store, ns, lambda items: len(items) == 2)
    assert sorted(rollout.revision(rs) for rs in kept) == [3, 4]


async def replicasets_until(
    store: Store, ns: str, predicate: Callable[[list[ReplicaSet]], bool]
) -> list[ReplicaSet]:
    """The namespace's ReplicaSets once `predicate` holds for them (followed through a watch)."""
    items: dict[str, ReplicaSet] = {}
    synced = False
    async with asyncio.timeout(20), contextlib.aclosing(store.watch(ReplicaSet, ns)) as events:
        async for event in events:
            synced = synced or event.type == "SYNCED"
            if event.object is not None:
                if event.type == "DELETED":
                    items.pop(event.object.metadata.name, None)
                else:
                    items[event.object.metadata.name] = event.object
            if synced and predicate(list(items.values())):
                return list(items.values())
    raise AssertionError("the watch ended")


async def test_paused_deployment_does_not_roll_until_resumed(
    client: Client, store: Store, ns: str, controllers: Any, nodes: Any
) -> None:
    await client.create(web(ns, 2))
    await wait_for(store, Deployment, ns, "web", rolled_out)
    await client.patch(Deployment, "web", {"spec": {"paused": True}}, ns)
    await set_image(client, ns, "busybox:2")
    paused = await wait_for(
        store, Deployment, ns, "web", lambda d: d.status.observed_generation == d.metadata.generation == 3
    )
    assert condition(paused, "Progressing") == ("Unknown", "DeploymentPaused")
    assert len(await client.list(ReplicaSet, ns)) == 1
    await client.patch(Deployment, "web", {"spec": {"paused": None}}, ns)
    await wait_for(store, Deployment, ns, "web", lambda d: rolled_out(d) and d.metadata.generation == 4)
    assert len(await client.list(ReplicaSet, ns)) == 2


async def test_min_ready_seconds_delays_availability(
    client: Client, store: Store, ns: str, controllers: Any, nodes: Any
) -> None:
    await client.create(web(ns, 1, min_ready_seconds=2))
    ready = await wait_for(store, Deployment, ns, "web", lambda d: d.status.ready_replicas == 1)
    assert ready.status.available_replicas == 0  # ready, but not for long enough yet
    available = await wait_for(store, Deployment, ns, "web", lambda d: d.status.available_replicas == 1)
    [pod] = await client.list(Pod, ns)
    since = pod.status.conditions[0].last_transition_time
    assert since is not None
    assert (now() - since).total_seconds() >= 2
    assert rolled_out(available) or available.status.available_replicas == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"spec": {"replicas": -1}}, "spec.replicas"),
        ({"spec": {"template": {"metadata": {"labels": {"app": "other"}}}}}, "spec.template.metadata.labels"),
        (
            {"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}}},
            "spec.strategy.rollingUpdate.maxUnavailable",
        ),
    ],
)
async def test_bad_deployment_changes_are_refused_and_nothing_changes(
    client: Client, ns: str, change: dict[str, Any], field: str
) -> None:
    before = await client.create(web(ns, 2))
    with pytest.raises(Invalid) as refused:
        await client.patch(Deployment, "web", change, ns)
    assert field in {cause.field for cause in refused.value.causes}
    after = await client.get(Deployment, "web", ns)
    assert after.metadata.resource_version == before.metadata.resource_version
