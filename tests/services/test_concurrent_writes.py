"""Controllers that write concurrently (the ReplicaSet controller's creates and deletes, the node
lifecycle controller's evictions) wait for every write before a failure ends the reconcile:
none goes on running unowned, racing the retry, with its outcome unseen.

Unit tests: the API is a stand-in that fails the first write at once and holds the others until
released, which a real API cannot be made to do on cue."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, cast

import pytest

from bus.client import Client
from bus.errors import Timeout
from bus.events import now
from bus.informer import Informer
from bus.meta import LabelSelector, ObjectMeta, Resource
from bus.resources import Event, Lease, Node, Pod, ReplicaSet
from bus.resources.apps import ReplicaSetSpec
from bus.resources.cluster import NodeSpec, Taint
from bus.resources.pod import Container, PodSpec, PodTemplateSpec
from bus.store import Store
from services.controllers.nodelifecycle import NodeLifecycleReconciler
from services.controllers.replicaset import ReplicaSetReconciler


class HeldWrites:
    """An API stand-in: the first pod write fails at once, the others wait for `release`."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.held = asyncio.Event()  # two writes are waiting
        self.pending = 0
        self.writes = 0

    async def _write(self) -> None:
        self.writes += 1
        if self.writes == 1:
            raise Timeout("the API did not answer within 10s")
        self.pending += 1
        if self.pending == 2:
            self.held.set()
        try:
            await self.release.wait()
        finally:
            self.pending -= 1

    async def create(self, obj: Resource) -> Resource:
        if isinstance(obj, Event):
            return obj
        await self._write()
        return obj

    async def delete(self, cls: type[Resource], name: str, namespace: str = "default", **_: Any) -> None:
        await self._write()


def informer(cls: type[Any]) -> Informer[Any]:
    return Informer(cast(Store, None), cls)  # fed by put(): no watch runs


async def fails_only_after_every_write(client: HeldWrites, attempt: asyncio.Task[Any]) -> None:
    async with asyncio.timeout(5):
        await client.held.wait()
    for _ in range(10):  # a few turns of the loop: enough for a bare gather to have returned
        await asyncio.sleep(0)
    assert not attempt.done(), "the reconcile ended while its other writes still ran"
    client.release.set()
    with pytest.raises(Timeout):
        await attempt
    assert client.pending == 0


def sleeper_set(replicas: int) -> ReplicaSet:
    labels = {"app": "s"}
    return ReplicaSet(
        metadata=ObjectMeta(name="s", namespace="ns", uid="rs-uid"),
        spec=ReplicaSetSpec(
            replicas=replicas,
            selector=LabelSelector(match_labels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels), spec=PodSpec(containers=[Container(name="c", image="i")])
            ),
        ),
    )


async def test_replicaset_creates_all_finish_before_a_failure_is_raised() -> None:
    client = HeldWrites()
    rs = sleeper_set(3)
    reconciler = ReplicaSetReconciler(cast(Client, client), informer(ReplicaSet), informer(Pod))
    attempt = asyncio.create_task(reconciler._manage("ns/s", rs, [], 3))
    await fails_only_after_every_write(client, attempt)
    # The failed create is expected no more; the two that went through still are.
    assert not reconciler.expectations.satisfied("ns/s")


async def test_evictions_all_finish_before_a_failure_is_raised() -> None:
    client = HeldWrites()
    pods = informer(Pod)
    for name in ("a", "b", "c"):
        pods.put(
            Pod(
                metadata=ObjectMeta(name=name, namespace="ns", uid=name),
                spec=PodSpec(containers=[Container(name="c", image="i")], node_name="n1"),
            )
        )
    reconciler = NodeLifecycleReconciler(cast(Client, client), informer(Node), informer(Lease), pods)
    long_ago = now() - timedelta(minutes=5)
    node = Node(
        metadata=ObjectMeta(name="n1"),
        spec=NodeSpec(taints=[Taint(key="dedicated", effect="NoExecute", time_added=long_ago)]),
    )
    attempt = asyncio.create_task(reconciler._evict(node))
    await fails_only_after_every_write(client, attempt)
