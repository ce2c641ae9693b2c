"""Node agents publish node and pod usage: rates from cumulative counters, for every runtime."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from nats.aio.client import Client as NATS

from bus import metrics
from bus.client import Client
from bus.errors import NotFound
from bus.resources import Pod
from bus.store import Store
from nodeagent.metrics import CpuRates, NodeMetricsPublisher, RunningContainer
from nodeagent.runtime import ContainerStats
from nodeagent.runtime.fake import FakeRuntime
from nodeagent.runtime.procfs import host_cpu, host_memory_used
from tests.metricsbus import pod_sample, wait_for_node_metrics
from tests.nodeagent.conftest import StartAgent
from tests.nodeagent.test_agent_docker import container, pod, running
from tests.waiting import wait_for, wait_gone

BURN = "while :; do :; done"


@pytest.mark.parametrize(
    ("previous", "current", "started", "expected"),
    [
        (None, (10.0, 5_000_000_000), 0.0, 500),  # first sample: averaged since the start
        (None, (10.0, 5_000_000_000), None, 0),  # first sample, start unknown: no rate yet
        ((10.0, 1_000_000_000), (12.0, 3_000_000_000), None, 1000),  # one core busy
        ((10.0, 1_000_000_000), (14.0, 1_200_000_000), None, 50),
        ((10.0, 9_000_000_000), (12.0, 1_000_000_000), None, 0),  # counter went back: restarted
    ],
)
def test_cpu_rates(
    previous: tuple[float, int] | None, current: tuple[float, int], started: float | None, expected: int
) -> None:
    rates = CpuRates()
    if previous is not None:
        rates.rate("c", previous[1], now=previous[0])
    assert rates.rate("c", current[1], now=current[0], started_at=started) == expected


def test_the_same_reading_twice_keeps_the_last_rate() -> None:
    # Docker answers with the figures of its last collection: two requests within one tick
    # get the same reading, which is no reason to report an idle container.
    rates = CpuRates()
    rates.rate("c", 1_000_000_000, now=10.0)
    assert rates.rate("c", 3_000_000_000, now=12.0) == 1000
    assert rates.rate("c", 3_000_000_000, now=12.0) == 1000
    assert rates.rate("c", 3_500_000_000, now=13.0) == 500


def test_cpu_rates_follow_a_clock_that_stepped_back() -> None:
    # Readings are stamped by the runtime's wall clock, which a time sync may step back: the
    # rate must not stay frozen at its last value until the clock catches up again.
    rates = CpuRates()
    rates.rate("c", 1_000_000_000, now=1000.0)
    assert rates.rate("c", 1_000_000_000, now=1001.0) == 0  # idle
    rates.rate("c", 1_500_000_000, now=400.0)  # ten minutes back, and busy since
    assert rates.rate("c", 2_500_000_000, now=401.0) == 1000
    assert rates.rate("c", 3_500_000_000, now=402.0) == 1000


def test_cpu_rates_forget_containers_that_are_gone() -> None:
    rates = CpuRates()
    rates.rate("a", 1_000_000_000, now=1.0)
    rates.rate("b", 1_000_000_000, now=1.0)
    rates.keep_only(["a"])
    assert rates.rate("a", 2_000_000_000, now=2.0) == 1000
    assert rates.rate("b", 2_000_000_000, now=2.0) == 0  # a first sample again


def test_host_usage_from_procfs() -> None:
    busy, total = host_cpu()
    assert 0 < busy < total
    assert host_memory_used() > 0


@pytest.mark.parametrize("runtime", ["process", pytest.param("docker", marks=pytest.mark.docker)])
async def test_agent_publishes_pod_usage(
    runtime: str,
    client: Client,
    store: Store,
    ns: str,
    nc: NATS,
    start_agent: StartAgent,
    request: pytest.FixtureRequest,
) -> None:
    if runtime == "docker":
        request.getfixturevalue("docker_engine")
    agent = await start_agent(runtime, extra=("--metrics-interval", "0.5"))
    try:
        await _check_pod_usage(client, store, nc, ns, agent.name)
    finally:  # a process-runtime pod outlives its agent: stop the busy loop for good
        for name in ("burn", "idle"):
            with contextlib.suppress(NotFound):
                await client.delete(Pod, name, ns, grace_period_seconds=0)
            await wait_gone(store, Pod, ns, name)


async def _check_pod_usage(client: Client, store: Store, nc: NATS, ns: str, node: str) -> None:
    await client.create(pod("burn", ns, node, container(BURN)))
    await client.create(pod("idle", ns, node, container("sleep 3600")))
    for name in ("burn", "idle"):
        await wait_for(store, Pod, ns, name, running)

    def measured(sample: metrics.NodeMetrics) -> bool:
        burn, idle = pod_sample(sample, "burn"), pod_sample(sample, "idle")
        return burn is not None and idle is not None and burn.cpu_millicores > 500

    sample = await wait_for_node_metrics(nc, node, measured)
    burn, idle = pod_sample(sample, "burn"), pod_sample(sample, "idle")
    assert burn is not None and idle is not None
    assert burn.namespace == ns and burn.uid
    assert [c.name for c in burn.containers] == ["main"]
    assert burn.memory_bytes > 0 and idle.memory_bytes > 0
    assert idle.cpu_millicores < 100
    assert sample.cpu_millicores >= 500  # the host runs the busy loop too
    assert sample.memory_bytes > 0 and sample.window_seconds >= 0.5

    # The stream keeps the latest sample of the node, for readers that come later.
    kept = [m for m in await metrics.latest_nodes(nc.jetstream()) if m.node == node]
    assert len(kept) == 1 and pod_sample(kept[0], "burn") is not None


class BrokenStats(FakeRuntime):
    """Stats of container "bad" fail (a bug, not a RuntimeFailure); the others wait until
    cancelled, and say so."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: set[str] = set()
        self.cancelled: set[str] = set()

    async def stats(self, container_id: str) -> ContainerStats:
        if container_id == "bad":
            raise RuntimeError("a bug in the runtime (injected)")
        self.waiting.add(container_id)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.add(container_id)
            raise
        raise AssertionError("unreachable")


async def test_a_failed_sample_leaves_no_stats_request_running(nc: NATS) -> None:
    runtime = BrokenStats()
    containers = [
        RunningContainer(
            namespace="ns", pod=f"p{i}", pod_uid=f"u{i}", name="c", container_id=cid, started_at=None
        )
        for i, cid in enumerate(["slow-1", "bad", "slow-2"])
    ]
    publisher = NodeMetricsPublisher(nc, runtime, node="n", interval=1, running=lambda: containers)
    with pytest.raises(BaseException):  # noqa: B017 (the bug surfaces, however wrapped)
        await publisher.collect()
    assert runtime.cancelled == runtime.waiting  # every sibling ended with the sample
