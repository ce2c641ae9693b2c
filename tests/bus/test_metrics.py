"""Metrics messages: their wire shape, their subjects, freshness, and the stream that keeps the
latest sample of each node and proxy."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
from nats.aio.client import Client as NATS

from bus import metrics, subjects
from tests.metricsbus import publish_node, publish_proxy


def test_subjects() -> None:
    assert subjects.metrics_node("n1") == "steer.metrics.node.n1"
    assert subjects.metrics_proxy("n1") == "steer.metrics.proxy.n1"
    assert subjects.metrics_filter("node") == "steer.metrics.node.*"
    assert subjects.metrics_filter() == "steer.metrics.*.*"
    assert subjects.metrics_all() == "steer.metrics.>"


def test_wire_shape_is_camel_case_with_plain_integers() -> None:
    sample = metrics.NodeMetrics(
        node="n1",
        timestamp=datetime(2030, 1, 1, tzinfo=UTC),
        window_seconds=5.0,
        cpu_millicores=0,
        memory_bytes=1024,
        pods=[metrics.PodMetrics(namespace="a", name="p", uid="u", cpu_millicores=250, memory_bytes=0)],
    )
    assert msgspec.json.decode(metrics.encode(sample)) == {
        "node": "n1",
        "timestamp": "2030-01-01T00:00:00Z",
        "windowSeconds": 5.0,
        "cpuMillicores": 0,  # zeros are written out: "idle" is not "unknown"
        "memoryBytes": 1024,
        "pods": [{"namespace": "a", "name": "p", "uid": "u", "cpuMillicores": 250, "memoryBytes": 0}],
    }
    assert metrics.decode_node(metrics.encode(sample)) == sample
    proxy = metrics.ProxyMetrics(
        node="n1",
        timestamp=datetime(2030, 1, 1, tzinfo=UTC),
        window_seconds=5.0,
        services=[
            metrics.ServiceRequests(
                namespace="a",
                name="web",
                requests=3,
                endpoints=[metrics.EndpointRequests(pod_name="p", requests=3)],
            )
        ],
    )
    assert metrics.decode_proxy(metrics.encode(proxy)) == proxy


def test_freshness_allows_three_intervals_and_some_clock_skew() -> None:
    stamp = datetime(2030, 1, 1, tzinfo=UTC)
    sample = metrics.ProxyMetrics(node="n", timestamp=stamp, window_seconds=5.0)
    assert metrics.is_fresh(sample, now=stamp + timedelta(seconds=24))
    assert not metrics.is_fresh(sample, now=stamp + timedelta(seconds=26))
    assert metrics.is_fresh(sample, now=stamp - timedelta(seconds=5))  # the publisher's clock is ahead


async def test_the_stream_keeps_the_latest_sample_of_each_subject(nc: NATS, api_servers: object) -> None:
    js = nc.jetstream()
    node = f"m-{uuid.uuid4().hex[:8]}"
    pod = metrics.PodMetrics(namespace="x", name="p", uid="u", cpu_millicores=1, memory_bytes=1)
    await publish_node(nc, node, [pod], cpu=10)
    await publish_node(nc, node, [], cpu=20)
    await publish_proxy(nc, node, [])
    latest = [m for m in await metrics.latest_nodes(js) if m.node == node]
    assert [(m.cpu_millicores, m.pods) for m in latest] == [(20, [])]
    assert [m.node for m in await metrics.latest_proxies(js) if m.node == node] == [node]
    info = await js.stream_info(subjects.METRICS_STREAM)  # made by the API server at start
    assert info.config.max_msgs_per_subject == 1
