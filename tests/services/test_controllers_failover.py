"""Leader election of `steer controllers` across real processes: a leader killed with SIGKILL in
the middle of a scale-up is replaced within the lease and no pod is created twice; a leader
stopped with SIGTERM gives the lease up, so its successor takes over at once.

No scheduler and no node agent run: the pods stay Pending, which is all counting needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from bus.meta import LabelSelector, ObjectMeta
from bus.protocol import SYSTEM_NAMESPACE
from bus.resources import Lease, Pod, ReplicaSet
from bus.resources.apps import ReplicaSetSpec
from bus.resources.pod import Container, PodSpec, PodTemplateSpec
from bus.store import Store
from bus.workloads import controller_of
from tests.cluster import ControlPlane
from tests.conftest import wait_for_components
from tests.waiting import wait_for

LEASE, RENEW = 4.0, 1.0  # what ControlPlane.start_controllers passes (--lease 4,1)
MARGIN = 2.0  # the watch, and process scheduling on a busy machine
REPLICAS = 300  # three times the controller's burst of creations: the scale-up outlasts a batch
ELECTION = "controllers"

Controllers = list[subprocess.Popen[bytes]]


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane.running(tmp_path_factory.mktemp("failover")) as plane:
        yield plane


@pytest.fixture
def start_pair(plane: ControlPlane) -> Iterator[Callable[..., Controllers]]:
    """Start two `steer controllers` processes; both are stopped (SIGTERM) after the test."""
    started: Controllers = []

    def start(*args: str) -> Controllers:
        pair = [plane.start_controllers(*args) for _ in range(2)]
        started.extend(pair)
        return pair

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
    for proc in started:
        proc.wait(20)


def pid_of(lease: Lease) -> int:
    """The holder's process id: identities are `<hostname>-<pid>`."""
    _, _, pid = lease.spec.holder_identity.rpartition("-")
    return int(pid) if pid.isdigit() else 0


async def leader_and_standby(
    plane: ControlPlane, store: Store, pair: Controllers
) -> tuple[Lease, subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """Once both candidates run and one of them holds the lease: the lease, the leader, the other."""
    await wait_for_components(plane.url, "steer-controllers", 2)
    pids = {proc.pid for proc in pair}
    lease = await wait_for(store, Lease, SYSTEM_NAMESPACE, ELECTION, lambda ls: pid_of(ls) in pids, within=30)
    leader = next(proc for proc in pair if proc.pid == pid_of(lease))
    return lease, leader, next(proc for proc in pair if proc is not leader)


def replicaset(name: str, ns: str) -> ReplicaSet:
    labels = {"app": name}
    return ReplicaSet(
        metadata=ObjectMeta(name=name, namespace=ns),
        spec=ReplicaSetSpec(
            replicas=0,
            selector=LabelSelector(match_labels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels), spec=PodSpec(containers=[Container(name="c", image="i")])
            ),
        ),
    )


class OwnedPods:
    """Follows, through one watch for the whole test, every pod a ReplicaSet owns."""

    def __init__(self, owner_uid: str, wanted: int) -> None:
        self.owner_uid = owner_uid
        self.wanted = wanted
        self.ever: set[str] = set()  # every owned pod ever seen: nothing deletes pods here
        self.live: set[str] = set()
        self.most = 0
        self.synced, self.first, self.complete = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def run(self, store: Store, ns: str) -> None:
        async with contextlib.aclosing(store.watch(Pod, ns)) as events:
            async for event in events:
                pod = event.object
                if event.type == "SYNCED":
                    self.synced.set()
                elif pod is not None and (ref := controller_of(pod)) and ref.uid == self.owner_uid:
                    name = pod.metadata.name
                    if event.type == "DELETED" or pod.metadata.deletion_timestamp is not None:
                        self.live.discard(name)
                    else:
                        self.live.add(name)
                        self.ever.add(name)
                    self.most = max(self.most, len(self.live))
                    if self.live:
                        self.first.set()
                    if len(self.live) == self.wanted:
                        self.complete.set()


async def until(event: asyncio.Event, within: float = 60) -> None:
    async with asyncio.timeout(within):
        await event.wait()


async def test_a_killed_leader_is_replaced_within_the_lease_and_no_pod_is_made_twice(
    plane: ControlPlane, start_pair: Callable[..., Controllers]
) -> None:
    loop = asyncio.get_running_loop()
    async with plane.connect() as (client, store):
        _, leader, standby = await leader_and_standby(plane, store, start_pair())
        ns = await plane.namespace(client)
        rs = await client.create(replicaset("web", ns))
        await wait_for(store, ReplicaSet, ns, "web", lambda r: r.status.observed_generation == 1)  # led
        pods = OwnedPods(rs.metadata.uid, REPLICAS)
        counting = asyncio.create_task(pods.run(store, ns))
        try:
            await until(pods.synced)
            await client.patch(ReplicaSet, "web", {"spec": {"replicas": REPLICAS}}, ns)
            await until(pods.first)
            leader.send_signal(signal.SIGKILL)  # mid-scale-up, and no chance to let the lease go
            killed = loop.time()
            await asyncio.to_thread(leader.wait, 10)
            last = await client.get(Lease, ELECTION, SYSTEM_NAMESPACE)
            assert pid_of(last) == leader.pid  # not taken over yet: the lease still runs

            taken = await wait_for(
                store, Lease, SYSTEM_NAMESPACE, ELECTION, lambda ls: pid_of(ls) == standby.pid, within=30
            )
            took = loop.time() - killed
            made_by_the_first = len(pods.ever)
            assert took <= LEASE + RENEW + MARGIN, f"takeover after {took:.1f}s"
            assert taken.spec.lease_transitions == last.spec.lease_transitions + 1
            assert taken.spec.acquire_time and last.spec.renew_time
            assert taken.spec.acquire_time - last.spec.renew_time > timedelta(seconds=LEASE)  # not early
            assert 0 < made_by_the_first < REPLICAS  # the handover came in the middle of the scale-up

            await until(pods.complete)
            await wait_for(store, ReplicaSet, ns, "web", lambda r: r.status.replicas == REPLICAS)
            assert pods.most == REPLICAS and len(pods.ever) == REPLICAS  # never more, never replaced
        finally:
            counting.cancel()
            await asyncio.gather(counting, return_exceptions=True)


async def test_sigterm_hands_the_lease_over_at_once(
    plane: ControlPlane, start_pair: Callable[..., Controllers]
) -> None:
    long_lease = 30.0  # expiry would take this long; a released lease is taken within a renew interval
    loop = asyncio.get_running_loop()
    async with plane.connect() as (_, store):
        before, leader, standby = await leader_and_standby(
            plane, store, start_pair("--lease", f"{long_lease:g},{RENEW:g}")
        )
        leader.terminate()
        stopped = loop.time()
        taken = await wait_for(
            store, Lease, SYSTEM_NAMESPACE, ELECTION, lambda ls: pid_of(ls) == standby.pid, within=long_lease
        )
        took = loop.time() - stopped
        assert took <= RENEW + MARGIN + 1.0, f"takeover after {took:.1f}s"  # well under the lease
        assert taken.spec.lease_transitions == before.spec.lease_transitions + 1
        assert await asyncio.to_thread(leader.wait, 10) == 0
