"""The service proxy of one node (kube-proxy's job, in userspace asyncio).

It knows every Service and Endpoints from the API's cluster feed and from listings (`feed`),
turns them into routes (`routes`), and keeps one listener per routed port on the node's address
(`forwarding`), each balancing new connections over its Service port's ready endpoints on all
nodes (`balancing`). A change of endpoints only changes where new connections go; a Service that
goes closes its listeners but not the connections they opened. A port that cannot be bound (in
use on this node) is a Warning event on the Service, retried at each re-sync, and every other
Service is served as usual. Request counts are published every `metrics_interval` (`tally`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client as NATS

from bus import metrics, subjects
from bus.client import Client
from bus.recorder import Recorder
from bus.resources import Endpoints, Service
from nodeagent.proxy.balancing import Policy, Pool
from nodeagent.proxy.feed import ServiceFeed
from nodeagent.proxy.forwarding import Connections, Listener
from nodeagent.proxy.mirror import Mirror
from nodeagent.proxy.routes import Backend, PoolKey, Route, ServiceKey, routes
from nodeagent.proxy.tally import Tally

log = logging.getLogger(__name__)

FAILED_TO_BIND = "FailedToBindPort"


@dataclass
class ProxyConfig:
    node: str
    address: str
    policy: Policy = "round-robin"
    resync_interval: float = 30.0
    metrics_interval: float = 5.0  # 0: publish no request counts


class ServiceProxy:
    def __init__(
        self,
        nc: NATS,
        client: Client,
        recorder: Recorder,
        config: ProxyConfig,
        resync_now: asyncio.Event | None = None,
        *,
        feed: ServiceFeed | None = None,
    ) -> None:
        self.nc = nc
        self.recorder = recorder
        self.config = config
        # A feed of its own unless the agent shares one (with the pod network's rules).
        self._own_feed = feed is None
        self.feed = feed or ServiceFeed(
            nc, client, resync_interval=config.resync_interval, resync_now=resync_now
        )
        self.services: Mirror[Service] = self.feed.services
        self.endpoints: Mirror[Endpoints] = self.feed.endpoints
        self.changed = self.feed.watch()
        self.listeners: dict[int, Listener] = {}
        self.pools: dict[PoolKey, Pool] = {}
        self.tally = Tally(config.node)
        self.connections = Connections()
        self._warned: set[tuple[PoolKey, int]] = set()

    async def run(self) -> None:
        """Serve until cancelled; then stop listening and end the open connections."""
        try:
            async with asyncio.TaskGroup() as tasks:
                if self._own_feed:
                    tasks.create_task(self.feed.run())
                tasks.create_task(self._sync_loop())
                if self.config.metrics_interval > 0:
                    tasks.create_task(self._metrics_loop())
        finally:
            for listener in self.listeners.values():
                listener.stop()
            self.listeners.clear()
            self.connections.close_all()

    async def _sync_loop(self) -> None:
        while True:
            await self.changed.wait()
            self.changed.clear()
            try:
                await self.sync()
            except Exception:  # fed from outside: a bad object must not stop the other Services
                log.exception("service proxy: serving what the Services say failed; again at the next change")

    # -- serving

    async def sync(self) -> None:
        """Make the listeners and pools match the routes."""
        wanted = routes(self.services.objects.values(), self.endpoints.objects)
        for port, listener in list(self.listeners.items()):
            if all(route.pool != listener.key for route in wanted.get(port, [])):
                log.info("service proxy: %s no longer served on port %d", listener.key, port)
                listener.stop()
                del self.listeners[port]
        pools: dict[PoolKey, Pool] = {}
        for candidates in wanted.values():
            for route in candidates:
                pool = pools.get(route.pool) or self.pools.get(route.pool)
                if pool is None:
                    pool = Pool(policy=self.config.policy)
                pool.update(route.backends)
                pools[route.pool] = pool
        self.pools = pools
        refused: list[tuple[Route, str]] = []
        for port, candidates in wanted.items():
            holder = self.listeners.get(port)
            if holder is None:
                holder, error = await self._listen(candidates[0])
                if error:
                    refused.append((candidates[0], error))
            for route in candidates:
                if holder is not None and route.pool != holder.key:
                    refused.append((route, f"the port is served for Service {holder.key}"))
        self._warned &= {(route.pool, route.port) for route, _ in refused}
        for route, why in refused:
            await self._warn(route, why)

    async def _listen(self, route: Route) -> tuple[Listener | None, str]:
        pool = self.pools[route.pool]
        listener = Listener(route.pool, pool, tally=self.tally, connections=self.connections)
        try:
            await listener.start(self.config.address, route.port)
        except OSError as err:
            return None, os.strerror(err.errno) if err.errno else str(err)
        log.info("service proxy: %s on %s:%d", route.pool, self.config.address, route.port)
        self.listeners[route.port] = listener
        return listener, ""

    async def _warn(self, route: Route, why: str) -> None:
        """A Warning event on the Service, once for as long as the port stays unavailable."""
        if (route.pool, route.port) in self._warned:
            return
        self._warned.add((route.pool, route.port))
        message = f"node {self.config.node}: cannot listen on {self.config.address}:{route.port}: {why}"
        log.warning("service proxy: %s: %s", route.pool, message)
        service = self.services.get(route.pool.service_key)
        if service is not None:
            await self.recorder.warning(service, FAILED_TO_BIND, message)

    # -- request counts

    async def _metrics_loop(self) -> None:
        subject = subjects.metrics_proxy(self.config.node)
        while True:
            await asyncio.sleep(self.config.metrics_interval)
            served: dict[ServiceKey, list[Backend]] = {}
            for listener in self.listeners.values():
                served.setdefault(listener.key.service_key, []).extend(listener.pool.backends)
            report = self.tally.take(served)
            with contextlib.suppress(nats.errors.Error):
                await self.nc.publish(subject, metrics.encode(report))
