"""The node lifecycle controller's judgement, on a clock the test turns: silence counts only while
we hear the bus; a node's evictions begin only once it has been unhealthy for a while, at its
zone's rate, and never when every node went silent together.

Unit tests: the connection state is a real `Link` told of disconnects and reconnects, the
watches are informers whose liveness the test sets, events go to a stand-in API.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from bus.client import Client
from bus.connection import Link
from bus.informer import Informer
from bus.meta import ObjectMeta
from bus.recorder import Recorder
from bus.resources import Event, Lease, Node
from bus.resources.cluster import NodeCondition, NodeStatus
from bus.store import Store
from services.controllers.disruption import EvictionLimits
from services.controllers.nodedisruption import DisruptionSweep
from services.controllers.nodehealth import NodeHealth

GRACE = 10.0
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
SETTLE = 3.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Events:
    """A stand-in API that keeps the events recorded."""

    def __init__(self) -> None:
        self.recorded: list[tuple[str, str]] = []  # (node, reason)

    async def create(self, obj: Any) -> Any:
        assert isinstance(obj, Event)
        self.recorded.append((obj.involved_object.name, obj.reason))
        return obj


def live(cls: type[Any]) -> Informer[Any]:
    informer: Informer[Any] = Informer(cast(Store, None), cls)
    informer._set_live(True)  # as after its first listing
    return informer


@pytest.fixture
def clock() -> Clock:
    return Clock()


def ready_node(name: str) -> Node:
    return Node(
        metadata=ObjectMeta(name=name),
        status=NodeStatus(conditions=[NodeCondition(type="Ready", status="True")]),
    )


async def test_silence_counts_only_while_we_hear_the_bus(clock: Clock) -> None:
    connection = Link()
    connection.connected.set()
    health = NodeHealth(connection, [live(Node), live(Lease)], clock=clock)
    heard_again: list[float] = []
    health.on_hearing(lambda: heard_again.append(clock.now))
    health.beat("lease", "a", None)
    clock.now = 5.0
    assert health.hearing and health.silent_for("a") == 5.0

    connection.disconnected()  # the server went away
    assert not health.hearing and health.silent_for("a") == 0.0
    clock.now = 100.0  # a long outage
    assert health.silent_for("a") == 0.0

    connection.reconnected()
    assert health.hearing and heard_again == [100.0]
    assert health.silent_for("a") == 0.0  # a fresh grace period
    clock.now = 103.0
    assert health.silent_for("a") == 3.0


async def test_a_broken_watch_is_deafness_too(clock: Clock) -> None:
    leases = live(Lease)
    health = NodeHealth(None, [live(Node), leases], clock=clock)
    health.beat("lease", "a", None)
    clock.now = 8.0
    leases._set_live(False)  # the watch broke: renewals may be happening unseen
    assert not health.hearing and health.silent_for("a") == 0.0
    clock.now = 30.0
    leases._set_live(True)
    clock.now = 31.0
    assert health.silent_for("a") == 1.0


async def test_a_reconnect_no_watch_noticed_is_a_blink_all_the_same(clock: Clock) -> None:
    connection = Link()
    connection.connected.set()
    health = NodeHealth(connection, [live(Node), live(Lease)], clock=clock)
    health.beat("lease", "a", None)
    clock.now = 9.0
    connection.reconnected()  # no disconnect was seen, and the watches say live
    assert health.silent_for("a") == 0.0


class Cluster:
    """Three nodes whose agents renew on their own schedules, and the sweep judging them."""

    def __init__(self, clock: Clock, names: tuple[str, ...] = ("a", "b", "c")) -> None:
        self.clock = clock
        self.nodes = [ready_node(n) for n in names]
        self.health = NodeHealth(None, [live(Node), live(Lease)], clock=clock)
        self.events = Events()
        recorder = Recorder(cast(Client, self.events), component="test")
        self.sweep = DisruptionSweep(
            self.health, recorder, grace=GRACE, settle=SETTLE, limits=EvictionLimits()
        )
        self.stamps = 0

    def renew(self, *names: str) -> None:
        for name in names:
            self.stamps += 1  # each renewal writes a new renewTime
            self.health.beat("lease", name, EPOCH + timedelta(seconds=self.stamps))

    async def at(self, when: float) -> set[str]:
        self.clock.now = when
        return await self.sweep.sweep(self.nodes)


async def test_nodes_silent_together_are_not_evicted(clock: Clock) -> None:
    cluster = Cluster(clock)
    for when, name in ((0.0, "a"), (1.0, "b"), (2.0, "c")):  # their last renewals, a second apart
        clock.now = when
        cluster.renew(name)
    released: set[str] = set()
    for second in range(11, 40):
        released |= await cluster.at(float(second))
    assert released == set() and cluster.sweep.released == set()
    assert cluster.sweep.zones.everywhere_disrupted
    assert sorted(cluster.events.recorded) == [
        ("a", "EvictionSuspended"),
        ("b", "EvictionSuspended"),
        ("c", "EvictionSuspended"),
    ]


async def test_one_silent_node_is_released_once_it_has_settled(clock: Clock) -> None:
    cluster = Cluster(clock)
    cluster.renew("a", "b", "c")
    for second in range(1, 30):
        clock.now = float(second)
        cluster.renew("b", "c")
        released = await cluster.at(float(second))
        if second <= GRACE + SETTLE:
            assert released == set(), second
        elif second == GRACE + 1 + SETTLE:  # unhealthy from 11 s, released 3 s later
            assert released == {"a"}
    assert cluster.sweep.released == {"a"}
    assert cluster.events.recorded == []


async def test_two_of_three_are_released_one_at_a_time(clock: Clock) -> None:
    cluster = Cluster(clock)
    cluster.renew("a", "b", "c")
    times: dict[str, int] = {}
    for second in range(1, 40):
        clock.now = float(second)
        cluster.renew("c")
        for name in await cluster.at(float(second)):
            times[name] = second
    assert times == {"a": 14, "b": 24}  # at 0.1 node/s: ten seconds apart


async def test_evictions_resume_when_most_nodes_are_heard_again(clock: Clock) -> None:
    cluster = Cluster(clock, names=("a", "b", "c", "d", "e"))
    cluster.renew("a", "b", "c", "d", "e")
    for second in range(1, 20):  # a, b, c go silent, d and e keep renewing: 60% silent
        clock.now = float(second)
        cluster.renew("d", "e")
        assert await cluster.at(float(second)) == set()
    assert cluster.sweep.zones.states == {"": "PartialDisruption"}
    assert {reason for _, reason in cluster.events.recorded} == {"EvictionSuspended"}
    released: dict[str, int] = {}
    for second in range(20, 60):  # b and c come back; a stays silent
        clock.now = float(second)
        cluster.renew("b", "c", "d", "e")
        for name in await cluster.at(float(second)):
            released[name] = second
    assert released == {"a": 20}  # unhealthy long enough already, and the zone is Normal again
    assert ("a", "EvictionResumed") in cluster.events.recorded
