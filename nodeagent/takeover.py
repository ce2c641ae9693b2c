"""Replacing a pod worker that failed, without starting its pod twice.

A worker that fails (our bug, an error nobody expected) leaves its containers running: a new
worker must adopt them, as after a restart of the agent, rather than start the pod again beside
them. The failed worker keeps the pod's place meanwhile, so the feed and the listings only
update it, and after a pause (doubling with each failure of that pod's workers, so that a bug
that repeats does not spin) the runtime is asked for the pod's containers and a new worker takes
them over.

The replacements are made by one task of the agent's, `run`, never by the failed worker's own
task: a worker can fail while the agent is stopping, and a task group that is shutting down
takes no new task. (On Python 3.11 a task whose task group failed can even look cancelled
afterwards, so a worker's task cannot tell a stopping agent from its own failure.)
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from nodeagent.runtime import ContainerInfo, Runtime, RuntimeFailure

if TYPE_CHECKING:
    from nodeagent.worker import PodWorker

log = logging.getLogger(__name__)

PAUSE = 1.0  # seconds before a failed worker's pod gets a new one, doubling with each failure
PAUSE_CAP = 30.0

Start = Callable[["PodWorker", list[ContainerInfo]], None]  # (the failed worker, its containers)


class TakeOvers:
    def __init__(
        self, runtime: Runtime, node: str, current: Callable[[str], PodWorker | None], start: Start
    ) -> None:
        self.runtime = runtime
        self.node = node
        self.current = current  # the worker holding a pod's place, by uid
        self.start = start
        self.failures: dict[str, int] = {}  # pod uid -> how many of its workers failed
        self._due: list[tuple[float, int, PodWorker]] = []
        self._order = itertools.count()
        self._added = asyncio.Event()

    def failed(self, worker: PodWorker) -> None:
        """`worker` failed; replace it after the pause."""
        failures = self.failures[worker.uid] = self.failures.get(worker.uid, 0) + 1
        pause = min(PAUSE * 2 ** min(failures - 1, 10), PAUSE_CAP)
        self._schedule(worker, pause)

    def ended(self, uid: str) -> None:
        """The pod's worker ended as it should: its failures are forgotten."""
        self.failures.pop(uid, None)

    def _schedule(self, worker: PodWorker, pause: float) -> None:
        heapq.heappush(self._due, (asyncio.get_running_loop().time() + pause, next(self._order), worker))
        self._added.set()

    async def run(self) -> None:
        """Make each replacement when it falls due, until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            self._added.clear()
            wait = self._due[0][0] - loop.time() if self._due else None
            if wait is None or wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._added.wait()  # or an earlier one is added
                continue
            _, _, failed = heapq.heappop(self._due)
            await self._take_over(failed)

    async def _take_over(self, failed: PodWorker) -> None:
        if self.current(failed.uid) is not failed:
            return  # the pod went meanwhile (and with it the failed worker's place)
        try:
            found = await self.runtime.containers(self.node)
        except RuntimeFailure as failure:
            log.warning("pod %s: cannot list its containers to take them over: %s", failed.key, failure)
            self._schedule(failed, PAUSE_CAP)
            return
        if self.current(failed.uid) is failed:
            log.info("pod %s: a new worker takes over its containers", failed.key)
            self.start(failed, [info for info in found if info.pod_uid == failed.uid])
