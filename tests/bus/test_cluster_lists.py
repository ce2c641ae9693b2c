"""A listing in a three-server cluster is complete even when its consumer lands on a server that
is still catching up after a restart.

A list or watch reads through a consumer that JetStream places on one of the stream's servers,
and it reads that server's copy. A server restarted after missing writes holds an old copy for
a while; a listing that trusted its "nothing pending" returned the keys of before the restart
(99 of 2,100 in one run). The follower now checks that it has delivered the leader's last
sequence before it calls itself caught up, and reads on elsewhere if not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

from bus.backoff import Backoff
from bus.errors import Timeout, Unavailable
from bus.meta import ObjectMeta
from bus.resources import Namespace
from bus.store import Store, StoreConfig
from tests.natscluster import NatsCluster, connected

T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    with NatsCluster.running(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


async def again(attempt: Callable[[], Awaitable[T]]) -> T:
    """`attempt()`, made again while the cluster answers that it cannot now (a stream electing
    its leader, a consumer placed on the returning server), as the SDK does."""
    retry = Backoff(first=0.1, cap=1.0)
    while True:
        try:
            return await attempt()
        except (Timeout, Unavailable):
            await asyncio.sleep(retry.next())


async def create_all(store: Store, prefix: str, count: int) -> None:
    async def one(i: int) -> None:
        obj = Namespace(metadata=ObjectMeta(name=f"{prefix}{i}"))
        await again(lambda: store.create(obj))

    for start in range(0, count, 50):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + 50))))


async def test_lists_right_after_a_server_returns_are_complete(cluster: NatsCluster) -> None:
    async with connected(cluster.urls, "lister") as nc:
        store = Store(nc.jetstream(timeout=10.0), StoreConfig(replicas=3))
        await again(store.ensure_buckets)
        await create_all(store, "a", 100)
        victim = cluster.names[2]
        await cluster.kill(victim)
        await create_all(store, "b", 1500)  # the other two still make a quorum
        await cluster.start_again(victim)
        counts = [await count(store) for _ in range(20)]
    assert counts == [1600] * 20


async def count(store: Store) -> int:
    return len((await again(lambda: store.list(Namespace)))[0])
