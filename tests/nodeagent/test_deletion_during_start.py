"""A pod deleted while its container is being started: the container must still be stopped and
the deletion finished (otherwise it runs on, unseen, beside its replacement). One pod worker runs
in the test's event loop against the real API, on a fake runtime whose start waits for a go."""

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
from nodeagent.backoff import BackoffPolicy
from nodeagent.ports import PortAllocator
from nodeagent.runtime import ContainerSpec
from nodeagent.runtime.fake import FakeRuntime
from nodeagent.worker import PodWorker, WorkerContext
from tests.waiting import wait_gone


class GatedRuntime(FakeRuntime):
    """Says when a start begins, and finishes it only when told to."""

    def __init__(self) -> None:
        super().__init__()
        self.starting = asyncio.Event()
        self.go = asyncio.Event()

    async def start(self, spec: ContainerSpec) -> str:
        self.starting.set()
        await self.go.wait()
        return await super().start(spec)


async def test_a_pod_deleted_while_its_container_starts_is_stopped_and_finished(
    nc: NATS, client: Client, store: Store, ns: str
) -> None:
    node = f"racer-{uuid.uuid4().hex[:6]}"
    runtime = GatedRuntime()
    node_client = Client(nc, node=node)
    ctx = WorkerContext(
        node=node,
        address="127.0.0.1",
        client=node_client,
        runtime=runtime,
        ports=PortAllocator("127.0.0.1", 30000, 30099),
        recorder=Recorder(node_client, component="steer-nodeagent", host=node),
        backoff=BackoffPolicy(0.5, 4, 60),
    )
    container = Container(name="main", image="busybox:local", command=["sleep", "3600"])
    spec = PodSpec(containers=[container], node_name=node, termination_grace_period_seconds=1)
    pod = await client.create(Pod(metadata=ObjectMeta(name="racer", namespace=ns), spec=spec))
    worker = PodWorker(ctx, pod, [])
    run = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(runtime.starting.wait(), 10)
        worker.update(await client.delete(Pod, "racer", ns))  # deleted while the start is under way
        await asyncio.wait_for(worker.stopping.wait(), 10)
        runtime.go.set()  # the container starts after its pod began stopping
        await asyncio.wait_for(run, 10)
    finally:
        run.cancel()
    assert await runtime.containers(node) == []
    await wait_gone(store, Pod, ns, "racer", within=10)
