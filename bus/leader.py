"""Leader election on a Lease, as Kubernetes' client-go does it.

Candidates compete for `steer-system/<name>`. Every write is a compare-and-set through the API,
so at most one candidate wins each round. Three durations, as client-go's:

- `lease_duration`: a standby takes the Lease over once it has seen no change of it (no
  renewal) for this long, counted on its own monotonic clock from when it saw the last change.
  Never from the renewTime written in the Lease: the holder's clock may be skewed from ours, and
  a renewal may land long after it was stamped.
- `renew_deadline` (< `lease_duration`): the leader stops its work once this long has passed
  since it *began* its last successful renewal, whatever it is doing. Counting from when a
  renewal returns would let a slow API (a renewal landing late, two client timeouts in a row)
  keep an old leader working after a standby has taken over. Each try is bounded by the time
  left. The gap `lease_duration - renew_deadline` is the margin for stopping the work and for
  clocks that tick at slightly different rates.
- `renew_every` (< `renew_deadline`): the leader renews this often; a failed try is retried
  every `retry_every`, until the deadline. A standby checks every `retry_every`.

Better no leader for a moment than two.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

import msgspec

from bus.client import Client
from bus.errors import AlreadyExists, Conflict, NotFound, SteerError
from bus.events import now
from bus.meta import ObjectMeta
from bus.protocol import SYSTEM_NAMESPACE
from bus.resources import Lease
from bus.resources.records import LeaseSpec

log = logging.getLogger(__name__)

RELEASE_WITHIN = 2.0


def add_election_arguments(parser: argparse.ArgumentParser) -> None:
    """`--lease` and `--instance`, for a service that campaigns (the scheduler, the controllers,
    a controller of your own)."""
    parser.add_argument(
        "--lease",
        default="15,5",
        help="leader lease duration,renew interval in seconds (the leader stops half-way between them)",
    )
    parser.add_argument(
        "--instance",
        help="this replica's identity in leader election (default: host-pid); a supervisor that "
        "restarts a replica under the same identity lets it take its lease back at once",
    )


def election_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[float, float]:
    """The lease duration and renew interval `--lease` gave; a usage error if they make no sense."""
    try:
        return parse_lease(args.lease)
    except ValueError as err:
        parser.error(f"--lease: {err}")


def parse_lease(text: str) -> tuple[float, float]:
    """`DURATION,RENEW` in seconds, as the `--lease` option of a service takes it; ValueError
    saying what is wrong. The duration is whole seconds (a Lease holds an int32)."""
    try:
        duration, renew = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f'"{text}" is not DURATION,RENEW (two numbers of seconds)') from None
    if duration < 1 or not 0 < renew < math.floor(duration):
        raise ValueError(
            "the duration is whole seconds, at least 1, and the renew interval must be positive "
            "and shorter than it"
        )
    return duration, renew


def default_renew_deadline(lease_duration: float, renew_every: float) -> float:
    """Half-way between the renewal interval and the lease (client-go's 10 s for 15 s and 5 s)."""
    return (renew_every + lease_duration) / 2


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
        renew_deadline: float | None = None,
    ) -> None:
        # The Lease holds whole seconds (Kubernetes' int32); every deadline here counts from the
        # duration standbys read there.
        self.lease_seconds = max(1, math.floor(lease_duration))
        self.renew_deadline = (
            renew_deadline
            if renew_deadline is not None
            else default_renew_deadline(self.lease_seconds, renew_every)
        )
        if not 0 < renew_every < self.renew_deadline < self.lease_seconds:
            raise ValueError(
                f"leader election needs 0 < renew_every ({renew_every:g}) < renew_deadline "
                f"({self.renew_deadline:g}) < lease_duration ({self.lease_seconds}, whole seconds)"
            )
        self.client = client
        self.name = name
        self.identity = identity
        self.renew_every = renew_every
        self.retry_every = retry_every
        self.leading = asyncio.Event()
        self._lease: Lease | None = None  # the version we last wrote or read
        self._observed: tuple[str, float] | None = None  # (resourceVersion, when we first saw it)
        self._failing = ""  # how the rounds fail, while they do

    def _loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    def _expired(self, lease: Lease) -> bool:
        """Whether another candidate's Lease may be taken: released, or unchanged for its
        duration since we first saw this version of it."""
        if not lease.spec.holder_identity:
            return True
        seen = self._loop_time()
        if self._observed is None or self._observed[0] != lease.metadata.resource_version:
            self._observed = (lease.metadata.resource_version, seen)
            return False
        duration = lease.spec.lease_duration_seconds or self.lease_seconds
        return seen - self._observed[1] >= duration

    async def try_acquire(self) -> bool:
        """One round: take or renew the lease if we may; whether we hold it now. Raises
        SteerError when the API could not say."""
        stamp = now()
        current = self._lease if self._lease is not None and self._holds(self._lease) else None
        if current is None:
            try:
                current = await self.client.get(Lease, self.name, SYSTEM_NAMESPACE)
            except NotFound:
                return await self._create(stamp)
        for _ in range(2):  # our copy may be stale (a renewal of ours whose reply was lost)
            if not self._holds(current) and not self._expired(current):
                self._lease = current
                return False
            try:
                self._lease = await self.client.update(self._stamped(current, stamp))
            except Conflict:
                current = await self.client.get(Lease, self.name, SYSTEM_NAMESPACE)
                continue
            except NotFound:
                self._lease = None
                return False
            return True
        return False

    def _holds(self, lease: Lease) -> bool:
        return lease.spec.holder_identity == self.identity

    def _stamped(self, lease: Lease, stamp: datetime) -> Lease:
        spec = LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=self.lease_seconds,
            acquire_time=lease.spec.acquire_time if self._holds(lease) else stamp,
            renew_time=stamp,
            lease_transitions=lease.spec.lease_transitions + (0 if self._holds(lease) else 1),
        )
        return msgspec.structs.replace(lease, spec=spec)

    async def _create(self, stamp: datetime) -> bool:
        spec = LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=self.lease_seconds,
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

    async def _round(self, deadline: float) -> bool:
        """One try, given up at `deadline` (loop time); whether we hold the lease."""
        left = deadline - self._loop_time()
        if left <= 0:
            return False
        try:
            async with asyncio.timeout(left):
                held = await self.try_acquire()
        except TimeoutError:
            self._failed("did not finish in time")
        except SteerError as err:
            self._failed(f"failed: {err}")
        else:
            if self._failing:
                log.info("%s: election rounds go through again", self.name)
                self._failing = ""
            return held
        return False

    def _failed(self, how: str) -> None:
        """Once per streak of failing rounds (the bus away for a minute is one line, not thirty)."""
        if how != self._failing:
            log.warning("%s: election round %s; trying again until it goes through", self.name, how)
        else:
            log.debug("%s: election round %s", self.name, how)
        self._failing = how

    async def run(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Campaign until cancelled; run `work` while leading, cancel it when leadership is lost."""
        while True:
            began = self._loop_time()
            if not await self._round(began + self.renew_deadline):
                await asyncio.sleep(max(began + self.retry_every - self._loop_time(), 0))
                continue
            log.info("%s: %s is the leader", self.name, self.identity)
            self.leading.set()
            try:
                async with asyncio.TaskGroup() as tasks:
                    worker = tasks.create_task(work())
                    await self._keep_renewing(valid_until=began + self.renew_deadline)
                    worker.cancel()
            finally:
                self.leading.clear()
            self._observed = None  # as a standby, the lease's age counts from now on
            log.warning(
                "%s: %s stopped leading (the lease was not renewed in time)", self.name, self.identity
            )

    async def _keep_renewing(self, *, valid_until: float) -> None:
        """Renew every `renew_every`, retrying every `retry_every`; return at `valid_until`,
        which each success moves to its start + renew_deadline, or when another holds the lease."""
        next_try = valid_until - self.renew_deadline + self.renew_every
        while True:
            await asyncio.sleep(max(min(next_try, valid_until) - self._loop_time(), 0))
            began = self._loop_time()
            if began >= valid_until:
                return
            if await self._round(valid_until):
                valid_until = began + self.renew_deadline
                next_try = began + self.renew_every
                continue
            if self._lease is not None and not self._holds(self._lease):
                return  # someone else holds it: stop now, not at the deadline
            next_try = self._loop_time() + self.retry_every

    async def release(self, *, within: float = RELEASE_WITHIN) -> None:
        """Give the lease up at shutdown, so that a successor need not wait for it to expire;
        best effort, given up after `within` seconds (the API may be stopping too)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._release()

    async def _release(self) -> None:
        if self._lease is None or not self._holds(self._lease):
            return
        lease, self._lease = self._lease, None
        for _ in range(3):  # our copy may be a renewal behind (one was in flight): read again
            if not self._holds(lease):
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
