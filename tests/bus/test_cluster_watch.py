"""Watches across the death of their own nats-server, in a three-server cluster.

A watch (`Store.watch`) and an informer are connected to one server only; while a writer creates
pods through the API, that server is killed with SIGKILL. The connection moves to another server
(nats-py learns them from the one it knew) and the watch resumes after the last revision it saw.
Checked once the writes are done: the informer's cache is exactly a fresh list; the raw watch
saw every pod ADDED exactly once and nothing else (no gap, no duplicate); and it said it was
stale, then synced again. Once for a server that leads the pods stream (the watch resumes only
after a new leader is elected), once for one that does not, and once with the watch connected
to another server than the stream leader that dies (its connection stays up; its consumer may
go with the leader, and the ordered consumer is made again from its missed heartbeats).

And with two of the three servers down: caches can still be read, writes fail with Unavailable
(or Timeout, where the stream's leader survived and holds the write), never hang, and once the
servers are back everything converges.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from bus.client import Client
from bus.errors import Timeout, Unavailable
from bus.informer import Informer
from bus.resources import Pod
from bus.store import Store, WatchEvent
from tests.natscluster import NatsCluster, api_replicas, connected, namespace
from tests.writeload import WriteLoad, pod

PODS_STREAM = "KV_steer-pods"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    with NatsCluster.running(tmp_path_factory.mktemp("cluster")) as cluster, api_replicas(cluster):
        yield cluster


async def collect(store: Store, ns: str, seen: list[WatchEvent], changed: asyncio.Event) -> None:
    async for event in store.watch(Pod, ns):
        seen.append(event)
        changed.set()


def told(informer: Informer[Pod]) -> asyncio.Event:
    """An event set on every change of the informer's cache or liveness."""
    changed = asyncio.Event()
    informer.on_change(lambda *_: changed.set())
    informer.on_live(lambda _: changed.set())
    return changed


async def until(condition: Callable[[], bool], changed: asyncio.Event, *, within: float = 30.0) -> None:
    """Until `condition()` holds, checked whenever `changed` is set."""
    async with asyncio.timeout(within):
        while True:
            changed.clear()
            if condition():
                return
            await changed.wait()


@pytest.mark.parametrize("which", ["stream leader", "follower", "stream leader, watch elsewhere"])
async def test_a_watch_resumes_after_its_own_server_dies(cluster: NatsCluster, which: str) -> None:
    async with connected(cluster.urls, "writer") as nc:
        client = Client(nc, timeout=3.0, retry_within=60.0)
        ns = await namespace(client)
        leader = await cluster.stream_leader(nc.jetstream(), PODS_STREAM)
        others = [n for n in cluster.names if n != leader]
        victim = others[0] if which == "follower" else leader
        # The last case: the watch's connection stays up, its consumer (on the leader) goes.
        watched = others[1] if which.endswith("elsewhere") else victim
        async with connected(cluster.url(watched), "watcher") as watcher_nc:
            store = Store(watcher_nc.jetstream(timeout=3.0))
            informer = Informer(store, Pod, ns)
            changed = told(informer)
            seen: list[WatchEvent] = []
            load = WriteLoad(client, ns, total=300, concurrency=4)
            async with asyncio.TaskGroup() as tasks:
                watching = tasks.create_task(collect(store, ns, seen, changed))
                informing = tasks.create_task(informer.run())
                await informer.synced.wait()
                writing = tasks.create_task(load.run())
                await load.answered(100)
                killed_at = time.monotonic()
                await cluster.kill(victim)
                await writing
                names = {c.name for c in load.created}
                writes_done = time.monotonic() - killed_at
                await until(
                    lambda: {p.metadata.name for p in informer.items()} == names and informer.live, changed
                )
                await until(lambda: sum(1 for e in seen if e.type == "ADDED") >= len(names), changed)
                caught_up = time.monotonic() - killed_at
                watching.cancel()
                informing.cancel()
            await cluster.start_again(victim)

        fresh = await client.list(Pod, ns)
        assert not load.failed
        assert {p.metadata.name: p.metadata.uid for p in informer.items()} == {
            p.metadata.name: p.metadata.uid for p in fresh
        }
        changes = Counter(e.type for e in seen)
        added = Counter(e.object.metadata.name for e in seen if e.type == "ADDED")
        assert set(added) == names and set(added.values()) == {1}, "a pod missed or seen twice"
        assert changes["MODIFIED"] == changes["DELETED"] == 0
        if watched == victim:
            assert changes["STALE"] >= 1 and changes["SYNCED"] >= 2
        print(
            f"\nwatch on {victim} ({which}) killed: writes done {writes_done:.2f}s and all seen "
            f"{caught_up:.2f}s after the kill; {dict(changes)}"
        )


async def test_two_servers_down_reads_go_on_writes_fail_clearly(cluster: NatsCluster) -> None:
    async with connected(cluster.urls, "writer") as nc:
        client = Client(nc, timeout=3.0, retry_within=60.0)
        ns = await namespace(client)
        before = [await client.create(_pod(ns)) for _ in range(5)]
        survivor = cluster.names[0]
        async with connected(cluster.url(survivor), "watcher") as watcher_nc:
            informer = Informer(Store(watcher_nc.jetstream(timeout=3.0)), Pod, ns)
            changed = told(informer)
            async with asyncio.TaskGroup() as tasks:
                informing = tasks.create_task(informer.run())
                await informer.synced.wait()
                down = [n for n in cluster.names if n != survivor]
                for name in down:
                    await cluster.kill(name)

                # Reads from the cache go on. A read through the API is served while the
                # surviving replica answers direct gets, which it may stop doing once it has no
                # leader: then it is Unavailable, never a wrong answer or a hang
                # (a Timeout at worst, if the request went to a dead server).
                assert {p.metadata.name for p in informer.items()} == {p.metadata.name for p in before}
                patient = Client(watcher_nc, timeout=3.0, retry_within=60.0)
                reader = Client(watcher_nc, timeout=3.0, retry_within=5.0)
                try:
                    read = await reader.get(Pod, before[0].metadata.name, ns)
                    assert read.metadata.uid == before[0].metadata.uid
                except (Unavailable, Timeout) as err:
                    print(f"\nwith two servers down, a read through the API: {err.message}")
                # Writes fail with a clear, retryable error, and never hang past the timeout.
                # Unavailable when the stream has no leader: nothing was written. Timeout when
                # its leader survived: it holds the write until a quorum returns, and may then
                # commit it (as after any Timeout, the write may have been applied).
                impatient = Client(watcher_nc, timeout=3.0, retry_within=0)
                refused, timed_out = set(), set()
                for i in range(3):
                    sent = time.monotonic()
                    with pytest.raises((Unavailable, Timeout)) as failed:
                        await impatient.create(_pod(ns, f"down-{i}"))
                    assert time.monotonic() - sent < 3.0 + 1.0
                    (refused if isinstance(failed.value, Unavailable) else timed_out).add(f"down-{i}")
                print(f"\nwith two servers down: {type(failed.value).__name__}: {failed.value.message}")

                # A patient client's write waits for the quorum to return, and then succeeds.
                writing = tasks.create_task(patient.create(_pod(ns)))
                for name in down:
                    await cluster.start_again(name)
                written = await writing
                await until(lambda: informer.get(f"{ns}/{written.metadata.name}") is not None, changed)
                informing.cancel()

        fresh = {p.metadata.name for p in await client.list(Pod, ns)}
        assert {p.metadata.name for p in informer.items()} == fresh
        assert {p.metadata.name for p in before} | {written.metadata.name} <= fresh
        assert not refused & fresh and fresh - timed_out == {p.metadata.name for p in before} | {
            written.metadata.name
        }
        for name in down:
            await cluster.wait_caught_up(name, PODS_STREAM)


def _pod(ns: str, name: str = "") -> Pod:
    obj = pod("two-down-")
    obj.metadata.namespace, obj.metadata.name = ns, name
    return obj
