"""Losing a nats-server of a three-server cluster while the API is busy writing.

A real cluster (tests/natscluster.py): three nats-servers with JetStream, every bucket and the
events stream at three replicas, two API replicas connected to all three servers. A writer
creates 1,000 pods through the API, eight at a time, while the server that leads the pods
bucket's stream (or the JetStream meta leader) is killed with SIGKILL. Checked afterwards:

- every create that got a success reply is stored, with the uid of the reply;
- none is stored twice (no two pods share a uid), and none is reported failed;
- a request sent without retries during the election fails with Unavailable or Timeout (and
  says so), never hangs and never gets a wrong answer;
- the killed server, started again, holds the same stream as the others.

How long writes were unavailable is printed, not asserted tightly (2 shared cores).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import nats.errors
import pytest

from bus import subjects
from bus.client import Client
from bus.codec import encode
from bus.errors import AlreadyExists, NotFound, SteerError, Timeout, Unavailable
from bus.resources import Pod
from bus.store import Store
from tests.natscluster import NatsCluster, api_replicas, connected, namespace
from tests.writeload import WriteLoad, pod

PODS_STREAM = "KV_steer-pods"
RECOVERY_BOUND = 30.0  # generous: writes came back within a few seconds on 2 shared cores


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    with NatsCluster.running(tmp_path_factory.mktemp("cluster")) as cluster, api_replicas(cluster):
        yield cluster


@dataclass
class Probe:
    """Creates sent one after the other without any retry: what a request meets during the election."""

    client: Client
    namespace: str
    errors: list[SteerError] = field(default_factory=list)
    took: list[float] = field(default_factory=list)
    succeeded: int = 0

    def summary(self) -> str:
        kinds = Counter(f"{type(e).__name__}: {e.message}" for e in self.errors)
        return "; ".join(f"{count} x {text}" for text, count in kinds.most_common())

    async def run(self) -> None:
        while True:
            obj = pod("probe-")
            obj.metadata.namespace = self.namespace
            sent = time.monotonic()
            try:
                await self.client.create(obj)
                self.succeeded += 1
            except SteerError as err:
                self.errors.append(err)
            self.took.append(time.monotonic() - sent)
            await asyncio.sleep(0.02)  # a steady trickle, not a second load


async def kill_under_load(cluster: NatsCluster, victim_of: str) -> None:
    async with connected(cluster.urls, "writer") as nc, connected(cluster.urls, "probe") as probe_nc:
        client = Client(nc, timeout=3.0, retry_within=60.0)
        ns = await namespace(client)
        js = nc.jetstream()
        await cluster.stream_leader(js, PODS_STREAM)
        if victim_of == "stream":
            victim = await cluster.stream_leader(js, PODS_STREAM)
        else:
            victim = await cluster.wait_for_meta_leader()
        load = WriteLoad(client, ns, total=1000, concurrency=8)
        probe = Probe(Client(probe_nc, timeout=3.0, retry_within=0), ns)
        async with asyncio.TaskGroup() as tasks:
            writing = tasks.create_task(load.run())
            probing = tasks.create_task(probe.run())
            await load.answered(200)
            killed_at = time.monotonic()
            await cluster.kill(victim)
            await writing
            probing.cancel()
        new_leader = await cluster.stream_leader(js, PODS_STREAM)
        print(
            f"\nkilled {victim} ({victim_of} leader) after 200 answers; pods stream now led by {new_leader}; "
            f"creates: {len(load.created)} ok, {len(load.failed)} failed, {client.retries} retries; "
            f"writes unavailable for {load.window_after(killed_at):.2f}s; "
            f"a create in flight at the kill took up to {load.stalled_over(killed_at):.2f}s; "
            f"probe without retries: {probe.succeeded} ok, {len(probe.errors)} failed "
            f"({probe.summary()}), slowest {max(probe.took):.2f}s"
        )

        # Every create answered with success is stored, with its uid; nothing twice; none failed.
        assert not load.failed, [f.error for f in load.failed][:5]
        stored = await client.list(Pod, ns)  # a fresh list, read again while the store recovers
        by_name = {p.metadata.name: p.metadata.uid for p in stored if p.metadata.name.startswith("w-")}
        assert len(load.created) == 1000
        assert {c.name: c.uid for c in load.created} == by_name
        uids = [p.metadata.uid for p in stored]
        assert len(uids) == len(set(uids)), "a create was stored twice"

        # A request during the election fails clearly, and never hangs past its timeout.
        for err in probe.errors:
            assert isinstance(err, Unavailable | Timeout), err
        assert max(probe.took) < 3.0 + 1.0
        assert load.window_after(killed_at) < RECOVERY_BOUND

        # The killed server comes back and catches up.
        await cluster.start_again(victim)
        state = await cluster.wait_caught_up(victim, PODS_STREAM)
        assert state["messages"] >= len(stored)


async def test_losing_the_pods_stream_leader_under_load(cluster: NatsCluster) -> None:
    await kill_under_load(cluster, "stream")


async def test_losing_the_meta_leader_under_load(cluster: NatsCluster) -> None:
    await kill_under_load(cluster, "meta")


async def test_a_create_of_a_key_with_a_write_in_flight_is_unavailable_not_taken(
    cluster: NatsCluster,
) -> None:
    """The stream leader refuses a compare-and-set write to a key while another write to it is
    still being replicated, though the key holds nothing yet. A create sent again after a lost
    reply meets exactly this: it must be told to try again (Unavailable), not that the name is
    taken by someone else, so that its retry finds its own first attempt."""
    async with connected(cluster.urls, "finder") as nc:
        ns = await namespace(Client(nc, timeout=3.0, retry_within=30.0))
        leader = await cluster.stream_leader(nc.jetstream(), PODS_STREAM)
    followers = [name for name in cluster.names if name != leader]
    async with connected(cluster.url(leader), "writer") as nc:
        js = nc.jetstream(timeout=1.0)
        store = Store(js)
        first, again = pod("first-"), pod("again-")
        for obj in (first, again):
            obj.metadata.namespace, obj.metadata.name = ns, "in-flight"
        key = subjects.kv_subject("steer-pods", subjects.key(ns, "in-flight"))
        with cluster.paused(*followers):  # the leader proposes, and cannot commit
            with pytest.raises(nats.errors.TimeoutError):
                await js.publish(key, encode(first), headers={"Nats-Expected-Last-Subject-Sequence": "0"})
            with pytest.raises(Unavailable):
                await store.create(again)
        # Committed once the followers answer: now the name is taken, by the first write.
        stored = await committed(store, ns, "in-flight")
        assert stored.spec == first.spec and stored.metadata.generate_name == "first-"
        with pytest.raises(AlreadyExists):
            await store.create(again)


async def committed(store: Store, namespace: str, name: str, *, within: float = 10.0) -> Pod:
    """The pod once the stream leader has applied it (the followers' acks arrive just after SIGCONT)."""
    async with asyncio.timeout(within):
        while True:
            try:
                return await store.get_from_leader(Pod, namespace, name)
            except NotFound:
                await asyncio.sleep(0.05)
