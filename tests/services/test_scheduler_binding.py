"""A bind that fails puts the pod back in the queue, whatever the failure, and the pod is bound
on a later try.

Unit tests of the scheduler's loop: the API is a stand-in that fails the first bind (and the
read after a Conflict) on cue, which a real API cannot be made to do. The scheduler's placement
against a real API is in test_scheduler.py."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from bus.client import Client
from bus.errors import Conflict, Invalid, SteerError, Timeout, Unavailable
from bus.meta import ObjectMeta
from bus.resources import Event, Node, Pod
from bus.resources.cluster import NodeCondition, NodeStatus
from bus.resources.pod import Container, PodSpec
from bus.store import Store
from services.scheduler.scheduler import Scheduler


class FlakyApi:
    """Binds fail with `first` once; a read after a Conflict fails with Timeout once."""

    def __init__(self, first: SteerError) -> None:
        self.first: SteerError | None = first
        self.read_fails = True
        self.binds: list[tuple[str, str]] = []
        self.bound = asyncio.Event()

    async def patch(self, cls: type[Any], name: str, patch: dict[str, Any], namespace: str) -> Any:
        if self.first is not None:
            error, self.first = self.first, None
            raise error
        self.binds.append((name, patch["spec"]["nodeName"]))
        self.bound.set()
        return None

    async def get(self, cls: type[Any], name: str, namespace: str) -> Any:
        if self.read_fails:
            self.read_fails = False
            raise Timeout("the API did not answer within 10s")
        return pending_pod()

    async def create(self, obj: Any) -> Any:
        assert isinstance(obj, Event)
        return obj

    async def update_status(self, obj: Any) -> Any:
        return obj


def pending_pod() -> Pod:
    return Pod(
        metadata=ObjectMeta(name="p", namespace="ns", resource_version="7"),
        spec=PodSpec(containers=[Container(name="c", image="i")]),
    )


def ready_node() -> Node:
    return Node(
        metadata=ObjectMeta(name="n1"),
        status=NodeStatus(
            conditions=[NodeCondition(type="Ready", status="True")],
            allocatable={"cpu": "2", "memory": "4Gi", "pods": "10"},
        ),
    )


@pytest.mark.parametrize(
    "first",
    [
        Conflict("the object has been modified"),  # and reading it again fails too
        Timeout("the API did not answer within 10s"),
        Unavailable("no API server is running"),
        Invalid("spec.nodeName: rejected"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_failed_bind_is_tried_again(first: SteerError) -> None:
    api = FlakyApi(first)
    async with asyncio.TaskGroup() as tasks:
        scheduler = Scheduler(cast(Client, api), cast(Store, None), tasks)
        scheduler._on_node("ADDED", None, ready_node())
        pod = pending_pod()
        scheduler.pods.put(pod)
        scheduler._on_pod("ADDED", None, pod)
        scheduler.nodes.synced.set()
        scheduler.pods.synced.set()
        loop = tasks.create_task(scheduler.run())
        try:
            async with asyncio.timeout(10):
                await api.bound.wait()
        finally:
            loop.cancel()
    assert api.binds == [("p", "n1")]
    assert scheduler.bind_failures == {}
