"""Removing the containers of finished pods a little later, as the kubelet's container GC does.

A stopped container costs the engine nothing but disk, while removing one costs about as much
engine time as starting one. Removed the moment its pod goes, every old container of a rolling
update would compete with the starts of the new ones (Docker Swarm keeps its old task containers,
five per slot, for the same reason). So the containers of a finished pod are removed once `delay`
seconds have passed, one at a time. Any still waiting when the agent stops are found by the next
agent's adoption, which removes the containers of pods that are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable

from nodeagent.runtime import Runtime
from nodeagent.runtime.base import RuntimeFailure

log = logging.getLogger(__name__)


class ContainerReaper:
    def __init__(self, runtime: Runtime, delay: float) -> None:
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
            await self._remove(container_id)

    async def flush(self, within: float) -> None:
        """Remove every container still waiting, for at most `within` seconds (the agent stops)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while self._waiting:
                    await self._remove(self._waiting.popleft()[1])

    async def _remove(self, container_id: str) -> None:
        try:
            await self.runtime.remove(container_id)
        except RuntimeFailure as failure:  # gone already, or the engine is away: adoption sweeps
            log.debug("cannot remove container %s: %s", container_id[:12], failure)
