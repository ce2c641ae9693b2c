"""Removing the containers of finished pods a little later, as the kubelet's container GC does.

A stopped container costs the engine nothing but disk, while removing one costs about as much
engine time as starting one. Removed the moment its pod goes, every old container of a rolling
update would compete with the starts of the new ones (Docker Swarm keeps its old task containers,
five per slot, for the same reason). So the containers of a finished pod are removed once `delay`
seconds have passed, one at a time. Any still waiting when the agent stops are found by the next
agent's adoption, which removes the containers of pods that are gone.

A removal that fails (an engine that does not answer) is tried again after the delay, and so is
a container that `dispose` cannot stop or remove: a container the agent gives up on would run or
linger, unowned, until the next restart of the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable

from nodeagent.runtime import Runtime
from nodeagent.runtime.base import ContainerNotFound, RuntimeFailure

log = logging.getLogger(__name__)

RETRY_FIRST = 0.5  # seconds before a failed stop or removal is tried again, doubling
RETRY_CAP = 30.0


class ContainerReaper:
    def __init__(self, runtime: Runtime, delay: float) -> None:
        if delay <= 0:
            raise ValueError(f"the reaper's delay must be positive, got {delay}")
        self.runtime = runtime
        self.delay = delay
        # One delay for all, so the order they come in is the order they fall due.
        self._waiting: deque[tuple[float, str]] = deque()
        self._added = asyncio.Event()

    def later(self, container_ids: Iterable[str]) -> None:
        """Remove these (stopped) containers once the delay has passed."""
        at = asyncio.get_running_loop().time() + self.delay
        self._waiting.extend((at, container_id) for container_id in container_ids)
        self._added.set()

    async def run(self) -> None:
        """Remove containers as they fall due, until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                self._added.clear()
                await self._added.wait()
                continue
            at, container_id = self._waiting[0]
            await asyncio.sleep(max(0.0, at - loop.time()))
            self._waiting.popleft()
            if not await self._remove(container_id):
                self.later([container_id])  # the engine may answer again by then

    async def flush(self, within: float) -> None:
        """Remove every container still waiting, for at most `within` seconds (the agent stops)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while self._waiting:
                    await self._remove(self._waiting.popleft()[1])

    async def _remove(self, container_id: str) -> bool:
        """Whether the container is gone now."""
        try:
            await self.runtime.remove(container_id)
        except RuntimeFailure as failure:
            log.warning("cannot remove container %s: %s; trying again later", container_id[:12], failure)
            return False
        return True


async def dispose(runtime: Runtime, container_id: str, grace: float) -> None:
    """Stop a container (SIGTERM, `grace`, SIGKILL) and remove it, until it is gone: a failed
    stop does not skip the removal (which kills what still runs), and while either fails both
    are tried again, with back-off. Returns once removed; until then only cancellation ends it."""
    delay = RETRY_FIRST
    while True:
        try:
            await runtime.stop(container_id, grace)
        except ContainerNotFound:
            return
        except RuntimeFailure as failure:
            log.warning("cannot stop container %s: %s; removing it anyway", container_id[:12], failure)
        try:
            await runtime.remove(container_id)
            return
        except RuntimeFailure as failure:
            log.warning("cannot remove container %s: %s; again in %gs", container_id[:12], failure, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_CAP)
