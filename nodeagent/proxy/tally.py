"""Counting what the proxy forwards, per Service and per endpoint pod, window by window.

Each accepted connection is one request of its Service (a TCP proxy sees connections, not HTTP
requests; busybox httpd and most load generators open one per request or keep them short).
`take()` ends a window: it returns the counts as a `ProxyMetrics` and starts the next one at zero.
A report lists every Service the proxy serves and every endpoint pod it balances over, with zero
counts included: a reader can tell an idle Service or pod from a missing one, and so see which
endpoints the proxy is using right now.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from bus.metrics import EndpointRequests, ProxyMetrics, ServiceRequests
from nodeagent.proxy.routes import Backend, ServiceKey

PodKey = tuple[str, str]  # (pod name, pod uid): a pod behind several ports of a Service counts once


def pod_of(backend: Backend) -> PodKey:
    return backend.pod or str(backend), backend.pod_uid


class Tally:
    def __init__(self, node: str) -> None:
        self.node = node
        self._accepted: Counter[ServiceKey] = Counter()
        self._forwarded: Counter[tuple[ServiceKey, PodKey]] = Counter()
        self._since = time.monotonic()

    def accepted(self, service: ServiceKey) -> None:
        self._accepted[service] += 1

    def forwarded(self, service: ServiceKey, backend: Backend) -> None:
        self._forwarded[service, pod_of(backend)] += 1

    def take(self, served: Mapping[ServiceKey, Iterable[Backend]]) -> ProxyMetrics:
        """The window's counts for every Service served (with the backends it balances over),
        then start a new window."""
        now = time.monotonic()
        window, self._since = now - self._since, now
        accepted, self._accepted = self._accepted, Counter()
        forwarded, self._forwarded = self._forwarded, Counter()
        pods: dict[ServiceKey, Counter[PodKey]] = {key: Counter() for key in accepted}
        for key, backends in served.items():
            pods[key] = Counter({pod_of(backend): 0 for backend in backends})
        for (key, pod), count in forwarded.items():
            pods.setdefault(key, Counter())[pod] += count
        services = [
            ServiceRequests(
                namespace=key[0],
                name=key[1],
                requests=accepted[key],
                endpoints=[
                    EndpointRequests(pod_name=name, requests=count, pod_uid=uid)
                    for (name, uid), count in sorted(counts.items())
                ],
            )
            for key, counts in sorted(pods.items())
        ]
        return ProxyMetrics(
            node=self.node, timestamp=datetime.now(UTC), window_seconds=round(window, 3), services=services
        )
