"""The autoscaler's view of pod usage and request rates: the latest sample of every node and proxy.

Fed live by a core subscription to `steer.metrics.>` and, at start, by the STEER_METRICS stream's
latest sample of each subject, so an autoscaler that just took over decides on current figures
rather than waiting an interval. Samples too old to describe the present are ignored, so a dead
node's pods read as unmeasured, never as idle.

Judged on our clock, never the publisher's: a live sample replaces the one before it because it
arrived later (NATS keeps one publisher's messages in order), and it is fresh for three of its
intervals after it *arrived*, on our monotonic clock, as the node lifecycle controller counts
heartbeats. Comparing the publisher's timestamps with each other or with our wall clock would
make a node whose clock stepped back (or runs behind ours) unmeasured: its new samples would
look older than the one held, or too old to count, for as long as the step. Only a sample read
back from the stream at start carries its age from its own timestamp, with some slack for skew.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from bus import metrics, subjects
from bus.connection import subscribe_checked
from bus.errors import SteerError

log = logging.getLogger(__name__)

REQUESTS_PER_SECOND = "requests_per_second"  # the Pods metric the service proxies measure
FRESH_INTERVALS = 3  # a sample describes the present for this many of its intervals...
ARRIVAL_SLACK = 1.0  # ...and this many seconds more, for a publisher a little late

S = TypeVar("S", metrics.NodeMetrics, metrics.ProxyMetrics)


@dataclass(frozen=True)
class Received(Generic[S]):
    sample: S
    at: float  # our monotonic clock: when it arrived (or, read back at start, when it was taken)


class PodMetricsCache:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.nodes: dict[str, Received[metrics.NodeMetrics]] = {}
        self.proxies: dict[str, Received[metrics.ProxyMetrics]] = {}
        self._pods: dict[tuple[str, str], tuple[str, metrics.PodMetrics]] = {}  # -> (node, usage)

    # -- feeding

    def _received(self, sample: S, *, replayed: bool) -> Received[S]:
        at = self.clock()
        if replayed:  # its age from its own stamp: the slack of freshness covers clock skew
            at -= max((datetime.now(UTC) - sample.timestamp).total_seconds() - metrics.CLOCK_SLACK, 0.0)
        return Received(sample, at)

    def add_node(self, sample: metrics.NodeMetrics, *, replayed: bool = False) -> None:
        """A node's sample; `replayed`: read back from the stream, so older than any live one."""
        if replayed and sample.node in self.nodes:
            return
        old = self.nodes.get(sample.node)
        if old is not None:
            for pod in old.sample.pods:
                if self._pods.get((pod.namespace, pod.name), ("",))[0] == sample.node:
                    del self._pods[(pod.namespace, pod.name)]
        self.nodes[sample.node] = self._received(sample, replayed=replayed)
        for pod in sample.pods:
            self._pods[(pod.namespace, pod.name)] = (sample.node, pod)

    def add_proxy(self, sample: metrics.ProxyMetrics, *, replayed: bool = False) -> None:
        if replayed and sample.node in self.proxies:
            return
        self.proxies[sample.node] = self._received(sample, replayed=replayed)

    def take(self, subject: str, data: bytes) -> None:
        """One live message of `steer.metrics.>`, whichever source it is from."""
        try:
            if subject.startswith(subjects.metrics_node("")):
                self.add_node(metrics.decode_node(data))
            elif subject.startswith(subjects.metrics_proxy("")):
                self.add_proxy(metrics.decode_proxy(data))
        except msgspec.DecodeError:
            log.warning("malformed metrics on %s ignored", subject)

    async def run(self, nc: NATS) -> None:
        """Subscribe, then load what the stream holds; until cancelled."""

        async def on_message(msg: Msg) -> None:
            self.take(msg.subject, msg.data)

        sub = await subscribe_checked(nc, subjects.metrics_all(), cb=on_message)
        try:
            js = nc.jetstream(timeout=5.0)
            try:
                for sample in await metrics.latest_nodes(js):
                    self.add_node(sample, replayed=True)
                for proxy in await metrics.latest_proxies(js):
                    self.add_proxy(proxy, replayed=True)
            except SteerError as err:  # live samples arrive anyway within an interval
                log.warning("could not read the metrics stream: %s", err)
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    # -- reading

    def _fresh(self, received: Received[S]) -> bool:
        window = FRESH_INTERVALS * received.sample.window_seconds + ARRIVAL_SLACK
        return self.clock() - received.at <= window

    def pod(self, namespace: str, name: str) -> metrics.PodMetrics | None:
        """The pod's latest usage, if its node's sample is fresh."""
        found = self._pods.get((namespace, name))
        if found is None:
            return None
        node, usage = found
        return usage if self._fresh(self.nodes[node]) else None

    def request_rates(self, namespace: str) -> dict[str, float] | None:
        """Requests per second to each pod of `namespace` over every proxy that reported lately;
        pods absent got none. None when no proxy reported at all (nothing is measured)."""
        fresh = [r.sample for r in self.proxies.values() if self._fresh(r)]
        if not fresh:
            return None
        rates: dict[str, float] = {}
        for proxy in fresh:
            for service in proxy.services:
                if service.namespace != namespace:
                    continue
                for endpoint in service.endpoints:
                    rate = endpoint.requests / proxy.window_seconds if proxy.window_seconds > 0 else 0.0
                    rates[endpoint.pod_name] = rates.get(endpoint.pod_name, 0.0) + rate
        return rates
