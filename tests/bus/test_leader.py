"""Leader election on a Lease through the API: one leader at a time, and a successor within
the lease duration when the leader dies without letting go."""

from __future__ import annotations

import asyncio
import uuid

from bus.client import Client
from bus.leader import LeaderElector
from bus.protocol import SYSTEM_NAMESPACE
from bus.resources import Lease


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
