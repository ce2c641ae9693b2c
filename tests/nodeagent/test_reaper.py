"""The reaper removes a finished pod's containers once its delay has passed, and whatever is
still waiting when the agent stops. Against the in-memory runtime: the timing is what is tested."""

from __future__ import annotations

import asyncio
import uuid

from nodeagent.reaper import ContainerReaper
from nodeagent.runtime.base import ContainerSpec
from nodeagent.runtime.fake import FakeRuntime

NODE = "reaped"


class WatchedRuntime(FakeRuntime):
    """Tells when a removal leaves the node with no container."""

    def __init__(self) -> None:
        super().__init__()
        self.emptied = asyncio.Event()

    async def remove(self, container_id: str) -> None:
        await super().remove(container_id)
        if not await self.containers(NODE):
            self.emptied.set()


async def stopped_containers(runtime: WatchedRuntime, count: int) -> list[str]:
    ids = []
    for i in range(count):
        uid = uuid.uuid4().hex
        spec = ContainerSpec(
            node=NODE, pod_uid=uid, pod_namespace="ns", pod_name=f"p{i}", name="c", image="i"
        )
        container_id = await runtime.start(spec)
        await runtime.stop(container_id, 0)
        ids.append(container_id)
    return ids


async def remaining(runtime: WatchedRuntime) -> set[str]:
    return {info.id for info in await runtime.containers(NODE)}


async def test_containers_are_removed_once_their_delay_has_passed() -> None:
    runtime = WatchedRuntime()
    reaper = ContainerReaper(runtime, delay=0.3)
    first = await stopped_containers(runtime, 2)
    reaping = asyncio.create_task(reaper.run())
    try:
        loop = asyncio.get_running_loop()
        handed_at = loop.time()
        reaper.later(first)
        async with asyncio.timeout(10):
            await runtime.emptied.wait()
        assert loop.time() - handed_at >= 0.3  # kept for the delay first
        runtime.emptied.clear()
        second = await stopped_containers(runtime, 1)
        reaper.later(second)  # the reaper was idle: it wakes for new work
        async with asyncio.timeout(10):
            await runtime.emptied.wait()
        assert await remaining(runtime) == set()
    finally:
        reaping.cancel()


async def test_flush_removes_what_is_still_waiting() -> None:
    runtime = WatchedRuntime()
    reaper = ContainerReaper(runtime, delay=3600)
    kept = await stopped_containers(runtime, 3)
    reaper.later(kept)
    assert await remaining(runtime) == set(kept)
    await reaper.flush(within=10)
    assert await remaining(runtime) == set()
