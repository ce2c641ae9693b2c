"""Leader election on a Lease, as Kubernetes' client-go does it.

Candidates compete for `steer-system/<name>`: the holder renews `spec.renewTime` every
`renew_every` seconds; a candidate takes the Lease over when it has not been renewed for
`lease_duration` seconds. Every write is a compare-and-set through the API, so at most one
candidate wins each round. The leader runs its work; if it cannot renew before its lease runs
out, it stops the work at once (better no leader for a moment than two).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from bus.client import Client
from bus.errors import AlreadyExists, Conflict, NotFound, SteerError
from bus.events import now
from bus.meta import ObjectMeta
from bus.protocol import SYSTEM_NAMESPACE
from bus.resources import Lease
from bus.resources.records import LeaseSpec

log = logging.getLogger(__name__)


class LeaderElector:
    def __init__(
        self,
        client: Client,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_every: float = 5.0,
        retry_every: float = 2.0,
    ) -> None:
        self.client = client
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_every = renew_every
        self.retry_every = retry_every
        self.leading = asyncio.Event()
        self._lease: Lease | None = None

    def _expired(self, lease: Lease, at: datetime) -> bool:
        if not lease.spec.holder_identity:
            return True  # released
        renewed = lease.spec.renew_time or lease.spec.acquire_time
        duration = lease.spec.lease_duration_seconds or self.lease_duration
        return renewed is None or at - renewed > timedelta(seconds=duration)

    async def try_acquire(self) -> bool:
        """One round: take or renew the lease if we may; whether we hold it now."""
        stamp = now()
        try:
            current = await self.client.get(Lease, self.name, SYSTEM_NAMESPACE)
        except NotFound:
            spec = LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=int(self.lease_duration),
                acquire_time=stamp,
                renew_time=stamp,
            )
            try:
                self._lease = await self.client.create(
                    Lease(metadata=ObjectMeta(name=self.name, namespace=SYSTEM_NAMESPACE), spec=spec)
                )
            except (AlreadyExists, Conflict):
                return False
            return True
        ours = current.spec.holder_identity == self.identity
        if not ours and not self._expired(current, stamp):
            return False
        if not ours:
            current.spec.lease_transitions += 1
            current.spec.acquire_time = stamp
            current.spec.holder_identity = self.identity
        current.spec.renew_time = stamp
        current.spec.lease_duration_seconds = int(self.lease_duration)
        try:
            self._lease = await self.client.update(current)  # compare-and-set on what we read
        except (Conflict, NotFound):
            return False
        return True

    async def run(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Campaign until cancelled; run `work` while leading, cancel it when leadership is lost."""
        while True:
            if not await self._acquire_quietly():
                await asyncio.sleep(self.retry_every)
                continue
            log.info("%s: %s is the leader", self.name, self.identity)
            self.leading.set()
            try:
                async with asyncio.TaskGroup() as tasks:
                    worker = tasks.create_task(work())
                    await self._keep_renewing()
                    worker.cancel()
            finally:
                self.leading.clear()
            log.warning("%s: %s lost the lease", self.name, self.identity)

    async def _acquire_quietly(self) -> bool:
        try:
            return await self.try_acquire()
        except SteerError as err:
            log.info("%s: election round failed: %s", self.name, err)
            return False

    async def _keep_renewing(self) -> None:
        """Return when a renewal fails for longer than the lease lasts."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.renew_every)
            if await self._acquire_quietly():
                last = loop.time()
            elif loop.time() - last >= self.lease_duration - self.renew_every:
                return

    async def release(self) -> None:
        """Give the lease up at shutdown, so that a successor need not wait for it to expire."""
        if self._lease is None:
            return
        lease, self._lease = self._lease, None
        for _ in range(3):  # our copy may be a renewal behind (one was in flight): read again
            if lease.spec.holder_identity != self.identity:
                return  # someone else holds it already
            lease.spec.renew_time = None
            lease.spec.holder_identity = ""
            try:
                await self.client.update(lease)
                return
            except Conflict:
                with contextlib.suppress(SteerError):
                    lease = await self.client.get(Lease, self.name, SYSTEM_NAMESPACE)
                    continue
                return
            except SteerError:
                return
