"""The scheduler service: informers, the scheduling loop under leader election, and its
micro-service announcement.

Several replicas may run; the one holding the `steer-system/scheduler` Lease schedules, the
others keep their caches warm and take over when it goes (Kubernetes' kube-scheduler does the
same). Binds are compare-and-set besides, so even two leaders at once would bind each pod once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass, field

from bus.client import Client
from bus.connection import Credentials, announce, close, connect, fail_when_closed
from bus.leader import LeaderElector
from bus.store import Store
from bus.unreadable import UnreadableReporter
from services.scheduler.scheduler import SCHEDULER_NAME, Scheduler

log = logging.getLogger(__name__)


@dataclass
class SchedulerConfig:
    servers: str = "nats://127.0.0.1:4222"
    credentials: Credentials = field(default_factory=Credentials)
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    lease_duration: float = 15.0
    renew_every: float = 5.0


async def run(config: SchedulerConfig, *, ready: asyncio.Event | None = None) -> None:
    nc = await connect(
        config.servers, name=f"steer-scheduler {config.instance}", credentials=config.credentials, wait=True
    )
    client = Client(nc)
    elector = LeaderElector(
        client,
        "scheduler",
        config.instance,
        lease_duration=config.lease_duration,
        renew_every=config.renew_every,
        retry_every=config.renew_every,
    )
    try:
        store = Store(nc.jetstream(timeout=5.0))
        await store.wait_for_buckets()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(fail_when_closed(nc))
            reporter = UnreadableReporter(client.create, component=SCHEDULER_NAME)
            store.on_unreadable(reporter)
            tasks.create_task(reporter.run())
            scheduler = Scheduler(client, store, tasks)
            tasks.create_task(scheduler.nodes.run())
            tasks.create_task(scheduler.pods.run())
            tasks.create_task(elector.run(scheduler.run))
            await scheduler.nodes.synced.wait()
            await scheduler.pods.synced.wait()
            await announce(
                nc, "scheduler", description="steersman scheduler", metadata={"instance": config.instance}
            )
            log.info("scheduler %s ready", config.instance)
            if ready is not None:
                ready.set()
    finally:
        await elector.release()
        await close(nc)
