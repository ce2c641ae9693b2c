"""A pod worker that fails (a bug, an error nobody expected) leaves its containers running: the
agent has a new worker take them over, as a restarted agent would, instead of starting the pod
again beside them; but not while the agent stops. The agent runs in the test's event loop
against the real API, on the in-memory runtime with failures injected."""

from __future__ import annotations

import asyncio
import uuid

from nats.aio.client import Client as NATS

from bus.client import Client
from bus.meta import ObjectMeta
from bus.resources import Pod
from bus.resources.pod import Container, PodSpec
from bus.store import Store
from nodeagent.agent import Agent
from nodeagent.config import AgentConfig
from nodeagent.runtime.fake import FakeRuntime
from tests.waiting import wait_for, wait_gone


class WaitFailsOnce(FakeRuntime):
    """The first wait for a container raises something no worker expects; says when a container
    is waited for again (supervised by a new worker)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[str] = []
        self.waited_again = asyncio.Event()

    async def wait(self, container_id: str) -> int:
        self.waits.append(container_id)
        if len(self.waits) == 1:
            raise RuntimeError("a bug (injected)")
        if self.waits.count(container_id) > 1:
            self.waited_again.set()
        return await super().wait(container_id)


class Stop(Exception):
    """The test's way to end the agent's task group, as a signal would."""


def running(p: Pod) -> bool:
    return p.status.phase == "Running" and all(s.state.running for s in p.status.container_statuses)


async def test_a_failed_worker_s_containers_are_taken_over(
    nc: NATS, client: Client, store: Store, ns: str
) -> None:
    node = f"taken-{uuid.uuid4().hex[:6]}"
    runtime = WaitFailsOnce()
    container = Container(name="main", image="busybox:local", command=["sleep", "3600"])
    spec = PodSpec(containers=[container], node_name=node)
    try:
        async with asyncio.TaskGroup() as tasks:
            agent = Agent(AgentConfig(name=node), nc, Client(nc, node=node), runtime, tasks)
            await agent.adopt()
            await client.create(Pod(metadata=ObjectMeta(name="taken", namespace=ns), spec=spec))
            await agent.resync()  # no feed here: the listing tells the agent of the pod
            await wait_for(store, Pod, ns, "taken", running)
            async with asyncio.timeout(30):
                await runtime.waited_again.wait()  # a new worker supervises the same container
            await agent.resync()  # the pod is listed again: nothing new starts
            assert [c.id for c in await runtime.containers(node)] == [runtime.waits[0]]
            raise Stop
    except* Stop:
        pass
    await client.delete(Pod, "taken", ns, grace_period_seconds=0)


class WaitFailsWhenCancelled(FakeRuntime):
    """A wait that, when cancelled, raises an error instead (a runtime's bug at shutdown)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()

    async def wait(self, container_id: str) -> int:
        self.waiting.set()
        try:
            return await super().wait(container_id)
        except asyncio.CancelledError:
            raise RuntimeError("a bug at shutdown (injected)") from None


async def test_a_worker_failing_as_the_agent_stops_is_not_taken_over(
    nc: NATS, client: Client, ns: str
) -> None:
    node = f"stopping-{uuid.uuid4().hex[:6]}"
    runtime = WaitFailsWhenCancelled()
    container = Container(name="main", image="busybox:local", command=["sleep", "3600"])
    await client.create(
        Pod(
            metadata=ObjectMeta(name="late", namespace=ns),
            spec=PodSpec(containers=[container], node_name=node),
        )
    )
    try:
        async with asyncio.TaskGroup() as tasks:
            agent = Agent(AgentConfig(name=node), nc, Client(nc, node=node), runtime, tasks)
            await agent.adopt()
            async with asyncio.timeout(30):
                await runtime.waiting.wait()
            raise Stop
    except* Stop:
        pass  # and nothing else: no worker was started in a task group shutting down
    await client.delete(Pod, "late", ns, grace_period_seconds=0)


class WaitFailsAfterStop(FakeRuntime):
    """A wait that raises once the container was stopped (a bug met while a pod terminates)."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped: set[str] = set()

    async def stop(self, container_id: str, grace_seconds: float) -> None:
        self.stopped.add(container_id)
        await super().stop(container_id, grace_seconds)

    async def wait(self, container_id: str) -> int:
        code = await super().wait(container_id)
        if container_id in self.stopped:
            # Late, as a slow engine would be: the worker is done with its pod by then and
            # waits in its task group's exit for this task.
            await asyncio.sleep(0.2)
            raise RuntimeError("a bug as the container stops (injected)")
        return code


async def test_a_worker_failing_as_its_pod_terminates_is_replaced(
    nc: NATS, client: Client, store: Store, ns: str
) -> None:
    """The failure of a worker whose pod terminates (its task group failing as it exits, which on
    Python 3.11 leaves the worker's task looking cancelled) is not taken for the agent stopping:
    a new worker finishes the deletion."""
    node = f"ending-{uuid.uuid4().hex[:6]}"
    runtime = WaitFailsAfterStop()
    container = Container(name="main", image="busybox:local", command=["sleep", "3600"])
    spec = PodSpec(containers=[container], node_name=node, termination_grace_period_seconds=1)
    try:
        async with asyncio.TaskGroup() as tasks:
            agent = Agent(AgentConfig(name=node), nc, Client(nc, node=node), runtime, tasks)
            await agent.adopt()
            await client.create(Pod(metadata=ObjectMeta(name="ending", namespace=ns), spec=spec))
            await agent.resync()
            await wait_for(store, Pod, ns, "ending", running)
            await client.delete(Pod, "ending", ns)
            await agent.resync()  # no feed here: the listing tells the agent of the deletion
            await wait_gone(store, Pod, ns, "ending", within=30)
            raise Stop
    except* Stop:
        pass
