"""The pod status writer compares and sets: a Conflict (someone wrote the pod since the agent saw
it) is met by reading the pod again and writing on, never by giving up; and the node's
registration backs off while it meets Conflicts. One worker runs in the test's event loop
against the real API, on the in-memory runtime."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from bus.client import Client
from bus.errors import Conflict
from bus.meta import ObjectMeta, is_true
from bus.recorder import Recorder
from bus.resources import Node, Pod
from bus.resources.pod import Container, PodSpec
from bus.store import Store
from nodeagent.backoff import BackoffPolicy
from nodeagent.config import AgentConfig
from nodeagent.ports import PortAllocator
from nodeagent.registration import Registration
from nodeagent.runtime.fake import FakeRuntime
from nodeagent.worker import PodWorker, WorkerContext
from tests.waiting import wait_for


class ConflictingClient(Client):
    """A node's client whose first `conflicts` status writes meet a Conflict, as when another
    writer got there first every time the API tried."""

    def __init__(self, nc: NATS, *, node: str, conflicts: int) -> None:
        super().__init__(nc, node=node)
        self.conflicts = conflicts

    async def update_status(self, obj: Any) -> Any:
        if self.conflicts > 0:
            self.conflicts -= 1
            raise Conflict("the object has been modified (injected)")
        return await super().update_status(obj)


def pod_spec(node: str) -> PodSpec:
    container = Container(name="main", image="busybox:local", command=["sleep", "3600"])
    return PodSpec(containers=[container], node_name=node, termination_grace_period_seconds=0)


def restarts(p: Pod) -> int:
    return sum(s.restart_count for s in p.status.container_statuses)


def running(p: Pod) -> bool:
    return p.status.phase == "Running" and all(s.state.running for s in p.status.container_statuses)


async def run_worker(node_client: Client, pod: Pod, runtime: FakeRuntime) -> asyncio.Task[None]:
    node = pod.spec.node_name
    ctx = WorkerContext(
        node=node,
        address="127.0.0.1",
        client=node_client,
        runtime=runtime,
        ports=PortAllocator("127.0.0.1", 30200, 30299),
        recorder=Recorder(node_client, component="steer-nodeagent", host=node),
        backoff=BackoffPolicy(0.5, 4, 60),
    )
    return asyncio.create_task(PodWorker(ctx, pod, []).run())


async def test_a_conflict_does_not_freeze_the_pod_status(
    nc: NATS, client: Client, store: Store, ns: str
) -> None:
    node = f"cas-{uuid.uuid4().hex[:6]}"
    pod = await client.create(Pod(metadata=ObjectMeta(name="cas", namespace=ns), spec=pod_spec(node)))
    task = await run_worker(ConflictingClient(nc, node=node, conflicts=2), pod, FakeRuntime())
    try:
        await wait_for(store, Pod, ns, "cas", running, within=20)
    finally:
        task.cancel()


async def test_status_writes_keep_what_others_wrote_meanwhile(
    nc: NATS, client: Client, store: Store, ns: str
) -> None:
    """Labels changed behind the worker's back survive its next status write, which is made
    on the pod read again after its Conflict."""
    node = f"cas-{uuid.uuid4().hex[:6]}"
    pod = await client.create(Pod(metadata=ObjectMeta(name="cas", namespace=ns), spec=pod_spec(node)))
    runtime = FakeRuntime()
    task = await run_worker(Client(nc, node=node), pod, runtime)
    try:
        seen = await wait_for(store, Pod, ns, "cas", lambda p: running(p) and is_true(p.status.conditions))
        seen.metadata.labels = {"changed": "meanwhile"}
        await client.update(seen)  # the worker is not told (no feed here)
        container_id = seen.status.container_statuses[0].container_id.removeprefix("fake://")
        await runtime.stop(container_id, 0)  # it exits: a restart for the worker to write
        restarted = await wait_for(
            store, Pod, ns, "cas", lambda p: p.status.container_statuses[0].restart_count == 1
        )
        assert restarted.metadata.labels == {"changed": "meanwhile"}
    finally:
        task.cancel()


async def test_registration_backs_off_while_it_meets_conflicts(nc: NATS, api_servers: object) -> None:
    class Conflicting(Client):
        remaining = 4

        async def update(self, obj: Any) -> Any:
            if self.remaining:
                self.remaining -= 1
                raise Conflict("the object has been modified (injected)")
            return await super().update(obj)

    name = f"reg-{uuid.uuid4().hex[:6]}"
    config = AgentConfig(name=name)
    await Registration(Client(nc, node=name), config, "fake://1").register()  # the Node exists
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    registration = Registration(Conflicting(nc, node=name), config, "fake://1", sleep=sleep)
    node = await registration.register()
    assert isinstance(node, Node) and node.metadata.name == name
    assert len(pauses) == 4 and all(p > 0 for p in pauses)
    assert pauses[-1] > pauses[0]  # growing


@pytest.fixture(autouse=True)
def _api(api_servers: object) -> None:
    """Every test here talks to the real API."""
