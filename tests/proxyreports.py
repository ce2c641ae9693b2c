"""Following a node's service proxy through the request counts it publishes.

Each report lists every Service the proxy serves and the endpoint pods it balances over, so a
test can wait for the proxy to have taken up a change (a new Service, new endpoints, a freed
port) instead of retrying requests until they land.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from bus import metrics, subjects
from bus.metrics import ProxyMetrics, ServiceRequests


class ProxyReports:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[ProxyMetrics] = asyncio.Queue()

    async def on_message(self, msg: Msg) -> None:
        await self.queue.put(metrics.decode_proxy(msg.data))

    async def until(
        self, ns: str, name: str, predicate: Callable[[ServiceRequests | None], bool], *, within: float = 30.0
    ) -> ServiceRequests | None:
        """The Service's entry in the first report that satisfies `predicate` (None: not served)."""
        last: ServiceRequests | None = None
        try:
            async with asyncio.timeout(within):
                while True:
                    report = await self.queue.get()
                    last = next((s for s in report.services if (s.namespace, s.name) == (ns, name)), None)
                    if predicate(last):
                        return last
        except TimeoutError:
            raise AssertionError(f"the proxy never reported {ns}/{name} as expected; last: {last}") from None

    async def serving(self, ns: str, name: str, pods: set[str], *, within: float = 30.0) -> None:
        """Until the proxy serves the Service over exactly these endpoint pods."""
        await self.until(ns, name, lambda s: s is not None and _pods(s) == pods, within=within)

    async def serving_on(
        self, nodes: set[str], ns: str, name: str, pods: set[str], *, within: float = 60.0
    ) -> None:
        """Until the latest report of each of `nodes` shows the Service served over exactly `pods`."""
        done: set[str] = set()
        last: dict[str, ServiceRequests | None] = {}
        try:
            async with asyncio.timeout(within):
                while done != nodes:
                    report = await self.queue.get()
                    entry = next((s for s in report.services if (s.namespace, s.name) == (ns, name)), None)
                    last[report.node] = entry
                    if entry is not None and _pods(entry) == pods:
                        done.add(report.node)
                    else:
                        done.discard(report.node)
        except TimeoutError:
            raise AssertionError(f"not every node served {ns}/{name} over {pods}; last: {last}") from None

    async def gone(self, ns: str, name: str, *, within: float = 30.0) -> None:
        await self.until(ns, name, lambda s: s is None, within=within)

    async def counted(self, ns: str, name: str, total: int, *, within: float = 30.0) -> Counter[str]:
        """Requests per pod, summed over reports until at least `total` were counted."""
        per_pod: Counter[str] = Counter()

        def add(entry: ServiceRequests | None) -> bool:
            if entry is not None:
                per_pod.update({e.pod_name: e.requests for e in entry.endpoints})
            return sum(per_pod.values()) >= total

        await self.until(ns, name, add, within=within)
        return per_pod


def _pods(entry: ServiceRequests) -> set[str]:
    return {e.pod_name for e in entry.endpoints}


@contextlib.asynccontextmanager
async def proxy_reports(nc: NATS, node: str = "*") -> AsyncIterator[ProxyReports]:
    """Reports of one node's proxy (or of every node's, with `*`)."""
    reports = ProxyReports()
    subject = subjects.metrics_filter("proxy") if node == "*" else subjects.metrics_proxy(node)
    sub = await nc.subscribe(subject, cb=reports.on_message)
    try:
        yield reports
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
