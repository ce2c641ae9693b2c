"""A pod worker that fails (a bug, an error nobody expected) leaves its containers running: the
agent has a new worker take them over, as a restarted agent would, instead of starting the pod
again beside them. The agent runs in the test's event loop against the real API, on the
in-memory runtime with one failure injected."""

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
from tests.waiting import wait_for


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


def running(p: Pod) -> bool:
    return p.status.phase == "Running" and all(s.state.running for s in p.status.container_statuses)


async def test_a_failed_worker_s_containers_are_taken_over(
    nc: NATS, client: Client, store: Store, ns: str
) -> None:
    node = f"taken-{uuid.uuid4().hex[:6]}"
    runtime = WaitFailsOnce()
    container = Container(name="main", image="busybox:local", command=["sleep", "3600"])
    spec = PodSpec(containers=[container], node_name=node)
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
        for worker in list(agent.workers.values()):
            worker.gone()  # the workers end, and with them the task group


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


class Stop(Exception):
    """The test's way to end the agent's task group, as a signal would."""


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
