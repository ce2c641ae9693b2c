"""The ReplicaSet controller against the real API: replicas kept, pods replaced, scaled,
orphans adopted and released. The controller runs in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from bus.client import Client
from bus.informer import Informer
from bus.meta import LabelSelector, ObjectMeta
from bus.resources import Pod, ReplicaSet
from bus.resources.apps import ReplicaSetSpec
from bus.resources.pod import Container, PodSpec, PodTemplateSpec
from bus.store import Store
from bus.workloads import controller_of
from services.controllers.replicaset import replicaset_controller
from tests.waiting import wait_for


@pytest.fixture
async def controller(client: Client, store: Store) -> AsyncIterator[None]:
    replicasets: Informer[ReplicaSet] = Informer(store, ReplicaSet)
    pods: Informer[Pod] = Informer(store, Pod)
    control = replicaset_controller(client, replicasets, pods, workers=2)
    tasks = [asyncio.create_task(t) for t in (replicasets.run(), pods.run(), control.run())]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def replicaset(name: str, ns: str, replicas: int) -> ReplicaSet:
    labels = {"app": name}
    return ReplicaSet(
        metadata=ObjectMeta(name=name, namespace=ns),
        spec=ReplicaSetSpec(
            replicas=replicas,
            selector=LabelSelector(match_labels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels), spec=PodSpec(containers=[Container(name="c", image="i")])
            ),
        ),
    )


async def owned_pods(store: Store, ns: str, owner: str, count: int) -> list[Pod]:
    """Wait (through a watch) until exactly `count` live pods are owned by `owner`."""
    pods: dict[str, Pod] = {}
    synced = False
    async with asyncio.timeout(30), contextlib.aclosing(store.watch(Pod, ns)) as events:
        async for event in events:
            synced = synced or event.type == "SYNCED"
            obj = event.object
            if obj is not None:
                if event.type == "DELETED" or obj.metadata.deletion_timestamp is not None:
                    pods.pop(obj.metadata.name, None)
                else:
                    pods[obj.metadata.name] = obj
            mine = [
                p
                for p in pods.values()
                if (ref := controller_of(p)) is not None
                and ref.name == owner
                and p.metadata.labels.get("app") == owner
            ]
            if synced and len(mine) == count:
                return mine
    raise AssertionError("unreachable")


async def test_keeps_replicas_replaces_and_scales(
    client: Client, store: Store, ns: str, controller: Any
) -> None:
    rs = await client.create(replicaset("web", ns, 3))
    pods = await owned_pods(store, ns, "web", 3)
    assert all(p.metadata.name.startswith("web-") for p in pods)
    assert all(controller_of(p).uid == rs.metadata.uid for p in pods)  # type: ignore[union-attr]
    await client.delete(Pod, pods[0].metadata.name, ns)  # a pod is lost: replaced
    replaced = await owned_pods(store, ns, "web", 3)
    assert pods[0].metadata.name not in {p.metadata.name for p in replaced}
    await client.patch(ReplicaSet, "web", {"spec": {"replicas": 1}}, ns)
    await owned_pods(store, ns, "web", 1)
    scaled = await wait_for(store, ReplicaSet, ns, "web", lambda r: r.status.replicas == 1)
    assert scaled.status.observed_generation == scaled.metadata.generation


async def test_adopts_orphans_and_releases_relabelled_pods(
    client: Client, store: Store, ns: str, controller: Any
) -> None:
    orphan = Pod(
        metadata=ObjectMeta(name="stray", namespace=ns, labels={"app": "api"}),
        spec=PodSpec(containers=[Container(name="c", image="i")]),
    )
    await client.create(orphan)
    await client.create(replicaset("api", ns, 2))
    pods = await owned_pods(store, ns, "api", 2)
    assert "stray" in {p.metadata.name for p in pods}  # adopted, so only one was created
    await client.patch(Pod, "stray", {"metadata": {"labels": {"app": "other"}}}, ns)
    after = await owned_pods(store, ns, "api", 2)  # a new pod replaces the one that left
    assert "stray" not in {p.metadata.name for p in after}
    await wait_for(store, Pod, ns, "stray", lambda p: controller_of(p) is None)  # released


class LaggingStore:
    """A store whose watches deliver every event `lag` seconds late, as a busy informer would."""

    def __init__(self, store: Store, lag: float) -> None:
        self.store, self.lag = store, lag

    async def watch(self, cls: Any, namespace: str) -> AsyncIterator[Any]:
        arrived: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def read() -> None:
            async with contextlib.aclosing(self.store.watch(cls, namespace)) as events:
                async for event in events:
                    arrived.put_nowait((loop.time(), event))

        reading = asyncio.create_task(read())
        try:
            while True:
                at, event = await arrived.get()
                await asyncio.sleep(max(0.0, at + self.lag - loop.time()))  # the lag itself
                yield event
        finally:
            reading.cancel()


async def test_never_creates_or_deletes_more_than_asked_while_its_cache_lags(
    client: Client, store: Store, ns: str
) -> None:
    """Status writes bring a ReplicaSet back before a lagging pod informer has seen the pods just
    created or deleted: expectations keep those reconciles from acting on stale counts."""
    replicasets: Informer[ReplicaSet] = Informer(store, ReplicaSet)
    pods: Informer[Pod] = Informer(cast(Store, LaggingStore(store, 0.5)), Pod)
    control = replicaset_controller(client, replicasets, pods, workers=2)
    running = [asyncio.create_task(t) for t in (replicasets.run(), pods.run(), control.run())]
    created: set[str] = set()
    deleting: set[str] = set()
    counted = asyncio.Event()  # set once 40 created and 30 deleting have been seen

    async def record() -> None:
        async with contextlib.aclosing(store.watch(Pod, ns)) as events:
            async for event in events:
                if event.object is not None:
                    created.add(event.object.metadata.name)
                    if event.type == "DELETED" or event.object.metadata.deletion_timestamp is not None:
                        deleting.add(event.object.metadata.name)
                if len(created) >= 40 and len(deleting) >= 30:
                    counted.set()

    running.append(asyncio.create_task(record()))
    try:
        await client.create(replicaset("many", ns, 40))
        await wait_for(store, ReplicaSet, ns, "many", lambda r: r.status.replicas == 40)
        await client.patch(ReplicaSet, "many", {"spec": {"replicas": 10}}, ns)
        await wait_for(store, ReplicaSet, ns, "many", lambda r: r.status.replicas == 10)
        await owned_pods(store, ns, "many", 10)
        async with asyncio.timeout(30):
            await counted.wait()
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    assert (len(created), len(deleting)) == (40, 30)
