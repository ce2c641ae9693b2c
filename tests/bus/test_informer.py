"""The informer's cache by namespace, fed by a real watch."""

from __future__ import annotations

import asyncio
import uuid

from bus.client import Client
from bus.informer import Change, Informer
from bus.meta import ObjectMeta
from bus.resources import Namespace, Pod
from bus.resources.pod import Container, PodSpec
from bus.store import Store


def pod(name: str, ns: str) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=ns),
        spec=PodSpec(containers=[Container(name="c", image="i")]),
    )


def names(pods: list[Pod]) -> set[str]:
    return {p.metadata.name for p in pods}


async def test_objects_by_namespace_follow_adds_and_deletes(client: Client, store: Store, ns: str) -> None:
    other = f"t-{uuid.uuid4().hex[:10]}"
    await client.create(Namespace(metadata=ObjectMeta(name=other)))
    await client.create(pod("a", ns))
    await client.create(pod("b", other))
    pods: Informer[Pod] = Informer(store, Pod)
    deleted = asyncio.Event()

    def on_change(change: Change, old: Pod | None, new: Pod | None) -> None:
        if change == "DELETED" and old is not None and old.metadata.name == "a":
            deleted.set()

    pods.on_change(on_change)
    watching = asyncio.create_task(pods.run())
    try:
        async with asyncio.timeout(10):
            await pods.synced.wait()
        assert (names(pods.in_namespace(ns)), names(pods.in_namespace(other))) == ({"a"}, {"b"})
        assert pods.in_namespace("nowhere") == []
        await client.delete(Pod, "a", ns, grace_period_seconds=0)
        async with asyncio.timeout(10):
            await deleted.wait()
        assert pods.in_namespace(ns) == [] and names(pods.in_namespace(other)) == {"b"}
        newer = await client.get(Pod, "b", other)
        newer.metadata.labels = {"seen": "live"}
        pods.put(newer)  # a version read live, ahead of the watch
        assert [p.metadata.labels for p in pods.in_namespace(other)] == [{"seen": "live"}]
    finally:
        watching.cancel()
