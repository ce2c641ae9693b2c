"""Buckets: only the API creates them, with its settings; a bucket with a TTL marks what expires, so
watches see it go, and a watch away longer than those marks last lists again instead of resuming."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats.js.errors
import pytest

from bus import kinds, natsserver, subjects
from bus.connection import close, connect
from bus.errors import Unavailable
from bus.events import now
from bus.meta import ObjectMeta
from bus.resources import Lease
from bus.resources.records import LeaseSpec
from bus.store import Store, StoreConfig, WatchEvent
from tests.faults import Relay


@pytest.fixture
def server(tmp_path: Path) -> Iterator[natsserver.NatsServer]:
    own = natsserver.start(tmp_path / "nats", log_file=tmp_path / "nats.log")
    yield own
    own.stop()


def lease(name: str, namespace: str) -> Lease:
    return Lease(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=LeaseSpec(holder_identity="test", renew_time=now(), lease_duration_seconds=1),
    )


async def test_only_the_api_creates_buckets_with_its_settings(server: natsserver.NatsServer) -> None:
    nc = await connect(server.url, name="test-buckets")
    try:
        js = nc.jetstream()
        with pytest.raises(Unavailable, match="no pods bucket .* the API creates it"):
            await Store(js).bucket(kinds.BY_KIND["Pod"])
        with pytest.raises(nats.js.errors.BucketNotFoundError):
            await js.key_value(subjects.bucket("pods"))  # asking did not create it
        config = StoreConfig(history=3)
        await asyncio.gather(*(Store(js, config).ensure_buckets() for _ in range(3)))  # replicas racing
        status = await (await Store(js).bucket(kinds.BY_KIND["Pod"])).status()
        assert status.history == 3
        await Store(js, StoreConfig(history=1)).ensure_buckets()  # a replica with other flags
        assert (await (await Store(js).bucket(kinds.BY_KIND["Pod"])).status()).history == 3
    finally:
        await close(nc)


async def _watch_into(store: Store, namespace: str, events: asyncio.Queue[WatchEvent]) -> None:
    async for event in store.watch(Lease, namespace):
        await events.put(event)


async def _next(events: asyncio.Queue[WatchEvent], *types: str) -> WatchEvent:
    async with asyncio.timeout(30):
        while (event := await events.get()).type not in types:
            pass
    return event


async def test_an_entry_that_expires_is_deleted_for_its_watchers(server: natsserver.NatsServer) -> None:
    nc = await connect(server.url, name="test-ttl")
    space = f"e-{uuid.uuid4().hex[:8]}"
    events: asyncio.Queue[WatchEvent] = asyncio.Queue()
    try:
        store = Store(nc.jetstream(), StoreConfig(ttl={"leases": 1.0}))
        await store.ensure_buckets()
        watching = asyncio.create_task(_watch_into(store, space, events))
        await _next(events, "SYNCED")
        await store.create(lease("short-lived", space))
        assert (await _next(events, "ADDED")).object.metadata.name == "short-lived"
        gone = await _next(events, "DELETED")  # nobody renewed it: the server's marker says so
        assert gone.object.metadata.name == "short-lived"
        watching.cancel()
    finally:
        await close(nc)


async def test_a_watch_away_longer_than_the_markers_last_lists_again(server: natsserver.NatsServer) -> None:
    writer = await connect(server.url, name="test-writer")
    space = f"e-{uuid.uuid4().hex[:8]}"
    events: asyncio.Queue[WatchEvent] = asyncio.Queue()
    ttl = 1.5
    try:
        store = Store(writer.jetstream(), StoreConfig(ttl={"leases": ttl}))
        await store.ensure_buckets()
        await store.create(lease("expires-while-away", space))
        async with Relay(server.url) as relay:
            watcher = await connect(relay.url, name="test-watcher")
            watching = asyncio.create_task(_watch_into(Store(watcher.jetstream()), space, events))
            try:
                assert (await _next(events, "ADDED")).object.metadata.name == "expires-while-away"
                await _next(events, "SYNCED")
                async with relay.cut():
                    await _next(events, "STALE")
                    # Away for longer than the entry and its expiry marker both live.
                    await asyncio.sleep(2 * ttl + 0.5)
                    await store.create(lease("created-while-away", space))
                seen = [await _next(events, "ADDED", "DELETED", "SYNCED") for _ in range(3)]
                assert sorted((e.type, e.object.metadata.name if e.object else "") for e in seen) == [
                    ("ADDED", "created-while-away"),
                    ("DELETED", "expires-while-away"),
                    ("SYNCED", ""),
                ]
            finally:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
                await close(watcher)
    finally:
        await close(writer)
