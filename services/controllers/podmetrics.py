"""The autoscaler's view of pod usage and request rates: the latest sample of every node and proxy.

Fed live by a core subscription to `steer.metrics.>` and, at start, by the STEER_METRICS stream's
latest sample of each subject, so an autoscaler that just took over decides on current figures
rather than waiting an interval. Samples too old to describe the present (`metrics.is_fresh`)
are ignored, so a dead node's pods read as unmeasured, never as idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from bus import metrics, subjects
from bus.errors import SteerError

log = logging.getLogger(__name__)

REQUESTS_PER_SECOND = "requests_per_second"  # the Pods metric the service proxies measure


class PodMetricsCache:
    def __init__(self) -> None:
        self.nodes: dict[str, metrics.NodeMetrics] = {}
        self.proxies: dict[str, metrics.ProxyMetrics] = {}
        self._pods: dict[tuple[str, str], tuple[str, metrics.PodMetrics]] = {}  # -> (node, usage)

    # -- feeding

    def add_node(self, sample: metrics.NodeMetrics) -> None:
        old = self.nodes.get(sample.node)
        if old is not None and old.timestamp > sample.timestamp:
            return  # a late message: keep the newer sample
        if old is not None:
            for pod in old.pods:
                if self._pods.get((pod.namespace, pod.name), ("",))[0] == sample.node:
                    del self._pods[(pod.namespace, pod.name)]
        self.nodes[sample.node] = sample
        for pod in sample.pods:
            self._pods[(pod.namespace, pod.name)] = (sample.node, pod)

    def add_proxy(self, sample: metrics.ProxyMetrics) -> None:
        old = self.proxies.get(sample.node)
        if old is None or old.timestamp <= sample.timestamp:
            self.proxies[sample.node] = sample

    def take(self, subject: str, data: bytes) -> None:
        """One message of `steer.metrics.>`, whichever source it is from."""
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

        sub = await nc.subscribe(subjects.metrics_all(), cb=on_message)
        try:
            js = nc.jetstream(timeout=5.0)
            try:
                for sample in await metrics.latest_nodes(js):
                    self.add_node(sample)
                for proxy in await metrics.latest_proxies(js):
                    self.add_proxy(proxy)
            except SteerError as err:  # live samples arrive anyway within an interval
                log.warning("could not read the metrics stream: %s", err)
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    # -- reading

    def pod(self, namespace: str, name: str, *, now: datetime | None = None) -> metrics.PodMetrics | None:
        """The pod's latest usage, if its node's sample is fresh."""
        found = self._pods.get((namespace, name))
        if found is None:
            return None
        node, usage = found
        return usage if metrics.is_fresh(self.nodes[node], now=now) else None

    def request_rates(self, namespace: str, *, now: datetime | None = None) -> dict[str, float] | None:
        """Requests per second to each pod of `namespace` over every proxy that reported lately;
        pods absent got none. None when no proxy reported at all (nothing is measured)."""
        fresh = [p for p in self.proxies.values() if metrics.is_fresh(p, now=now)]
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
