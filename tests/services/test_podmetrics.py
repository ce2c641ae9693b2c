"""The autoscaler's metrics cache judges samples on its own clock: which is newer by arrival, how
old by when it arrived. A node whose clock steps back (as a fresh machine's may when its time is
synced) or runs behind ours is measured all the same; a node that stops publishing is not.

Unit tests with a clock the test turns; samples as node agents and proxies publish them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bus import metrics
from services.controllers.podmetrics import PodMetricsCache

INTERVAL = 1.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def node_sample(stamp: datetime, *pods: tuple[str, int], node: str = "n1") -> metrics.NodeMetrics:
    return metrics.NodeMetrics(
        node=node,
        timestamp=stamp,
        window_seconds=INTERVAL,
        cpu_millicores=0,
        memory_bytes=0,
        pods=[
            metrics.PodMetrics(namespace="ns", name=name, uid=name, cpu_millicores=cpu, memory_bytes=0)
            for name, cpu in pods
        ],
    )


def cpu(cache: PodMetricsCache, pod: str) -> int | None:
    usage = cache.pod("ns", pod)
    return usage.cpu_millicores if usage is not None else None


def test_a_sample_stamped_earlier_than_the_last_still_replaces_it() -> None:
    now = datetime.now(UTC)
    cache = PodMetricsCache()
    cache.add_node(node_sample(now))  # no pod yet
    # The node's clock stepped back ten minutes; the burner started meanwhile.
    cache.add_node(node_sample(now - timedelta(minutes=10), ("burner", 200)))
    assert cpu(cache, "burner") == 200


def test_a_node_whose_clock_is_far_from_ours_is_fresh_while_it_publishes() -> None:
    now = datetime.now(UTC)
    for skew in (timedelta(minutes=-5), timedelta(minutes=5)):
        cache = PodMetricsCache()
        cache.add_node(node_sample(now + skew, ("web", 100)))
        assert cpu(cache, "web") == 100, skew


def test_a_node_that_stops_publishing_goes_unmeasured_after_three_intervals() -> None:
    now = datetime.now(UTC)
    clock = Clock()
    cache = PodMetricsCache(clock=clock)
    cache.add_node(node_sample(now, ("web", 100)))
    clock.now += 3 * INTERVAL
    assert cpu(cache, "web") == 100
    clock.now += 2  # and a second's slack
    assert cpu(cache, "web") is None


def test_a_sample_read_back_from_the_stream_never_replaces_a_live_one() -> None:
    now = datetime.now(UTC)
    clock = Clock()
    cache = PodMetricsCache(clock=clock)
    cache.add_node(node_sample(now, ("web", 300)))
    cache.add_node(node_sample(now - timedelta(seconds=1), ("web", 100)), replayed=True)
    assert cpu(cache, "web") == 300


def test_a_sample_read_back_from_the_stream_is_as_old_as_its_stamp_says() -> None:
    now = datetime.now(UTC)
    clock = Clock()
    cache = PodMetricsCache(clock=clock)
    cache.add_node(node_sample(now - timedelta(seconds=5), ("recent", 100), node="a"), replayed=True)
    cache.add_node(node_sample(now - timedelta(minutes=5), ("gone", 100), node="b"), replayed=True)
    assert cpu(cache, "recent") == 100
    assert cpu(cache, "gone") is None


def test_request_rates_of_proxies_follow_the_same_rules() -> None:
    now = datetime.now(UTC)
    clock = Clock()
    cache = PodMetricsCache(clock=clock)
    endpoints = [metrics.EndpointRequests(pod_name="web-1", requests=10)]
    service = metrics.ServiceRequests(namespace="ns", name="web", requests=10, endpoints=endpoints)
    cache.add_proxy(metrics.ProxyMetrics(node="n1", timestamp=now, window_seconds=INTERVAL))
    clock.now += 1
    stepped_back = now - timedelta(minutes=10)
    cache.add_proxy(
        metrics.ProxyMetrics(node="n1", timestamp=stepped_back, window_seconds=INTERVAL, services=[service])
    )
    assert cache.request_rates("ns") == {"web-1": 10.0}
    clock.now += 10
    assert cache.request_rates("ns") is None
