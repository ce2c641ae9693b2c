"""Metrics on the bus in tests: waiting for a node's samples, and publishing our own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from nats.aio.client import Client as NATS

from bus import metrics, subjects


async def wait_for_node_metrics(
    nc: NATS, node: str, predicate: Callable[[metrics.NodeMetrics], bool], *, within: float = 60.0
) -> metrics.NodeMetrics:
    """The first sample the node publishes that satisfies `predicate`."""
    found: asyncio.Future[metrics.NodeMetrics] = asyncio.get_running_loop().create_future()
    last: list[metrics.NodeMetrics] = []

    async def on_sample(msg: object) -> None:
        sample = metrics.decode_node(msg.data)  # type: ignore[attr-defined]
        last[:] = [sample]
        if predicate(sample) and not found.done():
            found.set_result(sample)

    sub = await nc.subscribe(subjects.metrics_node(node), cb=on_sample)
    try:
        async with asyncio.timeout(within):
            return await found
    except TimeoutError:
        raise AssertionError(f"node {node} never published such metrics; last: {last}") from None
    finally:
        await sub.unsubscribe()


def pod_sample(sample: metrics.NodeMetrics, name: str) -> metrics.PodMetrics | None:
    return next((p for p in sample.pods if p.name == name), None)


async def publish_node(
    nc: NATS,
    node: str,
    pods: list[metrics.PodMetrics],
    *,
    cpu: int = 100,
    memory: int = 1 << 30,
    timestamp: datetime | None = None,
) -> None:
    sample = metrics.NodeMetrics(
        node=node,
        timestamp=timestamp or datetime.now(UTC),
        window_seconds=5.0,
        cpu_millicores=cpu,
        memory_bytes=memory,
        pods=pods,
    )
    await _publish(nc, subjects.metrics_node(node), metrics.encode(sample))


async def publish_proxy(nc: NATS, node: str, services: list[metrics.ServiceRequests]) -> None:
    sample = metrics.ProxyMetrics(
        node=node, timestamp=datetime.now(UTC), window_seconds=5.0, services=services
    )
    await _publish(nc, subjects.metrics_proxy(node), metrics.encode(sample))


async def _publish(nc: NATS, subject: str, data: bytes) -> None:
    """As an agent publishes, but through JetStream for an acknowledgement: once this returns,
    the stream holds the sample and any reader sees it."""
    await nc.jetstream().publish(subject, data)
