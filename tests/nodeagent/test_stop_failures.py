"""A runtime that fails to stop or remove a container (an engine that times out, a process that
will not die) never makes the agent forget the container: a failed stop is retried and never
skips the removal, a failed removal is retried, and a pod's deletion finishes once its
containers are stopped. Workers and the agent run in the test's event loop against the real
API, on the in-memory runtime with failures injected."""

from __future__ import annotations

import asyncio
import uuid

from nats.aio.client import Client as NATS

from bus.client import Client
from bus.meta import ObjectMeta
from bus.recorder import Recorder
from bus.resources import Pod
from bus.resources.pod import Container, PodSpec
from bus.store import Store
from nodeagent.agent import Agent
from nodeagent.backoff import BackoffPolicy
from nodeagent.config import AgentConfig
from nodeagent.ports import PortAllocator
from nodeagent.reaper import ContainerReaper
from nodeagent.runtime import ContainerSpec, RuntimeFailure
from nodeagent.runtime.fake import FakeRuntime
from nodeagent.worker import PodWorker, WorkerContext
from tests.waiting import wait_for, wait_gone


class FailingRuntime(FakeRuntime):
    """Fails the first `stops` stops and the first `removals` removals; says when it has no
    container left."""

    def __init__(self, *, stops: int = 0, removals: int = 0) -> None:
        super().__init__()
        self.stops, self.removals = stops, removals
        self.failed: list[str] = []
        self.emptied = asyncio.Event()

    async def stop(self, container_id: str, grace_seconds: float) -> None:
        if self.stops > 0:
            self.stops -= 1
            self.failed.append("stop")
            raise RuntimeFailure("the engine does not answer (injected)")
        await super().stop(container_id, grace_seconds)

    async def remove(self, container_id: str) -> None:
        if self.removals > 0:
            self.removals -= 1
            self.failed.append("remove")
            raise RuntimeFailure("the engine does not answer (injected)")
        await super().remove(container_id)
        if not self._by_id:
            self.emptied.set()

    async def until_empty(self) -> None:
        async with asyncio.timeout(30):
            await self.emptied.wait()


def context(
    nc: NATS, node: str, runtime: FakeRuntime, reaper: ContainerReaper | None = None
) -> WorkerContext:
    node_client = Client(nc, node=node)
    return WorkerContext(
        node=node,
        address="127.0.0.1",
        client=node_client,
        runtime=runtime,
        ports=PortAllocator("127.0.0.1", 30100, 30199),
        recorder=Recorder(node_client, component="steer-nodeagent", host=node),
        backoff=BackoffPolicy(0.5, 4, 60),
        reaper=reaper,
    )


async def test_a_failed_stop_is_retried_and_the_deletion_finishes(
    nc: NATS, client: Client, store: Store, ns: str
) -> None:
    node = f"stubborn-{uuid.uuid4().hex[:6]}"
    runtime = FailingRuntime(stops=2, removals=1)
    pod = await client.create(
        Pod(
            metadata=ObjectMeta(name="stubborn", namespace=ns),
            spec=PodSpec(
                containers=[Container(name="main", image="busybox:local", command=["sleep", "3600"])],
                node_name=node,
                termination_grace_period_seconds=1,
            ),
        )
    )
    worker = PodWorker(context(nc, node, runtime), pod, [])
    run = asyncio.create_task(worker.run())
    try:
        await wait_for(
            store, Pod, ns, "stubborn", lambda p: any(s.state.running for s in p.status.container_statuses)
        )
        worker.update(await client.delete(Pod, "stubborn", ns))
        await wait_gone(store, Pod, ns, "stubborn", within=30)
        await asyncio.wait_for(run, 30)
    finally:
        run.cancel()
    assert runtime.failed == ["stop", "stop", "remove"]
    assert await runtime.containers(node) == []  # stopped in the end, and removed


async def test_orphans_are_removed_though_their_stop_fails(
    nc: NATS, client: Client, api_servers: object
) -> None:
    """A restarted agent finds a container of a pod that is gone: it is removed even when
    stopping it fails (it once stayed, running, until the next restart of the agent)."""
    node = f"orphans-{uuid.uuid4().hex[:6]}"
    runtime = FailingRuntime(stops=1, removals=1)
    spec = ContainerSpec(
        node=node,
        pod_uid=uuid.uuid4().hex,
        pod_namespace="gone",
        pod_name="p",
        name="c",
        image="i",
        command=["sleep", "3600"],
    )
    await runtime.start(spec)
    try:
        async with asyncio.TaskGroup() as tasks:
            agent = Agent(AgentConfig(name=node), nc, Client(nc, node=node), runtime, tasks)
            await agent.adopt()
            await runtime.until_empty()
            raise Done  # the agent's tasks run until it stops
    except* Done:
        pass
    assert runtime.failed == ["stop", "remove"]


class Done(Exception):
    """The test's way to stop the agent, as a signal would."""


async def test_the_reaper_retries_a_failed_removal() -> None:
    node = f"reaped-{uuid.uuid4().hex[:6]}"
    runtime = FailingRuntime(removals=2)
    spec = ContainerSpec(node=node, pod_uid="u", pod_namespace="ns", pod_name="p", name="c", image="i")
    container_id = await runtime.start(spec)
    await runtime.stop(container_id, 0)
    reaper = ContainerReaper(runtime, delay=0.05)
    reaping = asyncio.create_task(reaper.run())
    try:
        reaper.later([container_id])
        await runtime.until_empty()
    finally:
        reaping.cancel()
    assert runtime.failed == ["remove", "remove"]
