"""Leader election on a Lease through the API: one leader at a time, and a successor within
the lease duration when the leader dies without letting go."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta
from typing import TypeVar

from bus.client import Client
from bus.leader import LeaderElector
from bus.meta import Resource
from bus.protocol import SYSTEM_NAMESPACE
from bus.resources import Lease
from bus.store import Store

R = TypeVar("R", bound=Resource)


async def test_one_leader_and_a_takeover_within_the_lease(client: Client) -> None:
    name = f"lead-{uuid.uuid4().hex[:8]}"
    active: set[str] = set()
    most = 0

    def elector(identity: str) -> LeaderElector:
        return LeaderElector(client, name, identity, lease_duration=2.0, renew_every=0.4, retry_every=0.2)

    def work(identity: str):  # type: ignore[no-untyped-def]
        async def lead() -> None:
            nonlocal most
            active.add(identity)
            most = max(most, len(active))
            try:
                await asyncio.Event().wait()
            finally:
                active.discard(identity)

        return lead

    a, b = elector("a"), elector("b")
    task_a = asyncio.create_task(a.run(work("a")))
    async with asyncio.timeout(10):
        await a.leading.wait()
    task_b = asyncio.create_task(b.run(work("b")))
    lease = await client.get(Lease, name, SYSTEM_NAMESPACE)
    assert lease.spec.holder_identity == "a"
    task_a.cancel()  # dies without releasing the lease, as a process killed with SIGKILL would
    await asyncio.gather(task_a, return_exceptions=True)
    loop = asyncio.get_running_loop()
    died = loop.time()
    async with asyncio.timeout(10):
        await b.leading.wait()
    assert loop.time() - died <= 2.0 + 0.2 + 3.0  # the lease, one retry, and slack for a busy machine
    lease = await client.get(Lease, name, SYSTEM_NAMESPACE)
    assert lease.spec.holder_identity == "b" and lease.spec.lease_transitions == 1
    assert most == 1
    task_b.cancel()
    await asyncio.gather(task_b, return_exceptions=True)


async def test_release_lets_a_successor_in_at_once(client: Client) -> None:
    name = f"lead-{uuid.uuid4().hex[:8]}"
    first = LeaderElector(client, name, "first", lease_duration=60.0)
    assert await first.try_acquire()
    second = LeaderElector(client, name, "second", lease_duration=60.0)
    assert not await second.try_acquire()
    await first.release()
    assert await second.try_acquire()


async def test_release_lets_go_even_from_a_copy_one_renewal_behind(client: Client) -> None:
    name = f"lead-{uuid.uuid4().hex[:8]}"
    elector = LeaderElector(client, name, "a", lease_duration=30.0, renew_every=10.0)
    assert await elector.try_acquire()
    stale = elector._lease
    assert await elector.try_acquire()  # a renewal the shutdown did not see finish
    elector._lease = stale
    await elector.release()
    lease = await client.get(Lease, name, SYSTEM_NAMESPACE)
    assert lease.spec.holder_identity == ""  # free at once, not after 30 s


class SlowRenewals(Client):
    """A client whose Lease updates reach the API `delay` seconds late, as through an API that is
    slow to take them: the renewTime a late write carries was stamped before it left."""

    def __init__(self, client: Client, delay: float) -> None:
        super().__init__(client.nc, timeout=client.timeout)
        self.delay = delay

    async def update(self, obj: R) -> R:
        if isinstance(obj, Lease):
            await asyncio.sleep(self.delay)
        return await super().update(obj)


async def test_a_leader_whose_renewals_are_late_stops_before_a_standby_takes_over(client: Client) -> None:
    """Renewals that land after the renew deadline must stop the work then, not when they return:
    otherwise the old leader reconciles on while a standby that saw the lease expire leads too."""
    name = f"lead-{uuid.uuid4().hex[:8]}"
    active: set[str] = set()
    most = 0

    def work(identity: str):  # type: ignore[no-untyped-def]
        async def lead() -> None:
            nonlocal most
            active.add(identity)
            most = max(most, len(active))
            try:
                await asyncio.Event().wait()
            finally:
                active.discard(identity)

        return lead

    timings = {"lease_duration": 2.0, "renew_every": 0.4, "retry_every": 0.2}
    slow = LeaderElector(SlowRenewals(client, 1.5), name, "slow", **timings)
    standby = LeaderElector(client, name, "standby", **timings)
    task_slow = asyncio.create_task(slow.run(work("slow")))
    async with asyncio.timeout(10):
        await slow.leading.wait()  # created the lease (creates are not slow)
    task_standby = asyncio.create_task(standby.run(work("standby")))
    try:
        async with asyncio.timeout(20):
            await standby.leading.wait()
        assert not slow.leading.is_set()
        assert most == 1, "two leaders at once"
    finally:
        for task in (task_slow, task_standby):
            task.cancel()
        await asyncio.gather(task_slow, task_standby, return_exceptions=True)


class SkewedClock(Client):
    """A client whose Lease writes carry times an hour behind: a holder with a skewed clock."""

    async def create(self, obj: R) -> R:
        return await super().create(_skewed(obj))

    async def update(self, obj: R) -> R:
        return await super().update(_skewed(obj))


def _skewed(obj: R) -> R:
    if isinstance(obj, Lease) and obj.spec.renew_time is not None:
        obj.spec.renew_time -= timedelta(hours=1)
    return obj


async def test_a_standby_does_not_take_over_from_a_live_leader_with_a_skewed_clock(
    client: Client, store: Store
) -> None:
    """The standby counts the lease's age from when it saw it change, not from its renewTime."""
    name = f"lead-{uuid.uuid4().hex[:8]}"
    timings = {"lease_duration": 2.0, "renew_every": 0.4, "retry_every": 0.2}
    leaders: list[str] = []

    def work(identity: str):  # type: ignore[no-untyped-def]
        async def lead() -> None:
            leaders.append(identity)
            await asyncio.Event().wait()

        return lead

    behind = LeaderElector(SkewedClock(client.nc, timeout=client.timeout), name, "behind", **timings)
    standby = LeaderElector(client, name, "standby", **timings)
    tasks = [asyncio.create_task(behind.run(work("behind")))]
    try:
        async with asyncio.timeout(10):
            await behind.leading.wait()
        tasks.append(asyncio.create_task(standby.run(work("standby"))))
        # Twelve renewals: 4.8 s of them, more than two lease durations.
        renewals = 0
        async with asyncio.timeout(30), contextlib.aclosing(store.watch(Lease, SYSTEM_NAMESPACE)) as events:
            async for event in events:
                if event.object is not None and event.object.metadata.name == name:
                    assert event.object.spec.holder_identity == "behind", "the standby took over"
                    renewals += event.type == "MODIFIED"
                    if renewals >= 12:
                        break
        assert leaders == ["behind"]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_release_gives_up_on_an_api_that_does_not_answer(client: Client) -> None:
    """At shutdown the API may be stopping too: a release is best effort, and brief."""
    elector = LeaderElector(client, f"mute-{uuid.uuid4().hex[:6]}", "me", lease_duration=3, renew_every=1)
    assert await elector.try_acquire()

    class Mute:
        async def update(self, obj: Lease) -> Lease:
            await asyncio.Event().wait()  # never answers
            raise AssertionError

    elector.client = Mute()  # type: ignore[assignment]
    loop = asyncio.get_running_loop()
    began = loop.time()
    await elector.release(within=0.5)
    assert loop.time() - began < 5  # bounded by `within`, not by a request's timeout
