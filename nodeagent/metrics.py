"""Publishing this node's usage: the node's CPU and memory and each running pod's, every interval.

Runtimes report cumulative CPU time; a rate needs two samples, so the publisher remembers each
container's previous sample. A container seen for the first time is averaged since it started,
so a new pod has a figure at once. Samples of all containers are taken concurrently, at most
`STATS_CONCURRENCY` at once: the Docker engine answers a stats request only at its next
collection tick (about a second), so asking one container after another would take a second
each; six containers asked at once took 1.0-1.1 s in all (Docker 20.10). The node figures are
the host's, from /proc: several agents sharing one host (as `steer up` runs them) each report
the whole host.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import nats.errors
from nats.aio.client import Client as NATS

from bus import metrics, subjects
from nodeagent.runtime import Runtime, RuntimeFailure
from nodeagent.runtime.procfs import host_cpu, host_memory_used

log = logging.getLogger(__name__)

STATS_CONCURRENCY = 64


@dataclass(frozen=True)
class RunningContainer:
    """A container of a pod that runs now, as the pod workers know it."""

    namespace: str
    pod: str
    pod_uid: str
    name: str
    container_id: str
    started_at: datetime | None


class CpuRates:
    """Millicores from cumulative CPU nanoseconds: the rate since the previous reading of the
    same key, or since `started_at` for a key seen for the first time. Times are in seconds on
    one clock (the wall clock: a runtime's own reading times are on it)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int, int]] = {}  # key -> (time, cpu nanos, rate)

    def rate(self, key: str, cpu_nanos: int, *, now: float, started_at: float | None = None) -> int:
        previous = self._last.get(key)
        if previous is not None:
            elapsed, used = now - previous[0], cpu_nanos - previous[1]
            if elapsed < 0:  # the clock stepped back: rates count from this reading on
                self._last[key] = (now, cpu_nanos, previous[2])
                return previous[2]
            if elapsed == 0:  # the same reading again (a runtime sampling on its own schedule)
                return previous[2]
        elif started_at is not None:
            elapsed, used = now - started_at, cpu_nanos
        else:
            elapsed, used = 0.0, 0
        # A counter that went back was restarted: no rate until the next reading.
        rate = round(used / elapsed / 1e6) if elapsed > 0 and used >= 0 else 0
        self._last[key] = (now, cpu_nanos, rate)
        return rate

    def keep_only(self, keys: Iterable[str]) -> None:
        """Forget containers that are gone, so the memory does not grow with churn."""
        wanted = set(keys)
        self._last = {k: v for k, v in self._last.items() if k in wanted}


class NodeMetricsPublisher:
    def __init__(
        self,
        nc: NATS,
        runtime: Runtime,
        *,
        node: str,
        interval: float,
        running: Callable[[], list[RunningContainer]],
    ) -> None:
        self.nc = nc
        self.runtime = runtime
        self.node = node
        self.interval = interval
        self.running = running
        self.rates = CpuRates()
        # A first reading now, so that even the first sample has a node CPU rate.
        self._host_busy: tuple[float, int] = (time.monotonic(), host_cpu()[0])
        self._limit = asyncio.Semaphore(STATS_CONCURRENCY)

    async def run(self) -> None:
        """Publish a sample every interval until cancelled."""
        await asyncio.sleep(min(self.interval, 1.0))  # so the first node CPU rate has a window
        while True:
            started = time.monotonic()
            try:
                sample = await self.collect()
                await self.nc.publish(subjects.metrics_node(self.node), metrics.encode(sample))
            except (OSError, nats.errors.Error) as err:
                log.warning("could not publish node metrics: %s", err)
            except Exception:  # a sample lost to a bug must not take the node's pods with it
                log.exception("could not take a usage sample; trying again next interval")
            await asyncio.sleep(max(self.interval - (time.monotonic() - started), 0.1))

    async def collect(self) -> metrics.NodeMetrics:
        containers = self.running()
        # A task group, not gather: should one request fail unexpectedly, the others end with
        # this sample instead of running on, unowned.
        async with asyncio.TaskGroup() as group:
            usage = [group.create_task(self._container(c)) for c in containers]
        pods: dict[str, metrics.PodMetrics] = {}
        for container, task in zip(containers, usage, strict=True):
            measured = task.result()
            if measured is None:
                continue
            pod = pods.get(container.pod_uid)
            if pod is None:
                pod = pods[container.pod_uid] = metrics.PodMetrics(
                    namespace=container.namespace,
                    name=container.pod,
                    uid=container.pod_uid,
                    cpu_millicores=0,
                    memory_bytes=0,
                )
            pod.containers.append(measured)
            pod.cpu_millicores += measured.cpu_millicores
            pod.memory_bytes += measured.memory_bytes
        self.rates.keep_only(c.container_id for c in containers)
        now = time.monotonic()
        window = now - self._host_busy[0]
        cpu = await asyncio.to_thread(self._node_cpu, now)
        return metrics.NodeMetrics(
            node=self.node,
            timestamp=datetime.now(UTC),
            window_seconds=round(max(window, self.interval), 3),
            cpu_millicores=cpu,
            memory_bytes=await asyncio.to_thread(host_memory_used),
            pods=sorted(pods.values(), key=lambda p: (p.namespace, p.name)),
        )

    async def _container(self, container: RunningContainer) -> metrics.ContainerMetrics | None:
        async with self._limit:
            try:
                stats = await self.runtime.stats(container.container_id)
            except RuntimeFailure as err:  # stopped or removed meanwhile: left out this time
                log.debug("no stats for %s: %s", container.container_id, err)
                return None
        read_at = stats.read_at.timestamp() if stats.read_at is not None else time.time()
        started = container.started_at.timestamp() if container.started_at is not None else None
        cpu = self.rates.rate(container.container_id, stats.cpu_nanos, now=read_at, started_at=started)
        return metrics.ContainerMetrics(
            name=container.name, cpu_millicores=cpu, memory_bytes=stats.memory_bytes
        )

    def _node_cpu(self, now: float) -> int:
        busy, _ = host_cpu()
        previous, self._host_busy = self._host_busy, (now, busy)
        if now <= previous[0]:
            return 0
        return max(round((busy - previous[1]) / (now - previous[0]) / 1e6), 0)
