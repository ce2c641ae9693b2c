"""Watches that lose their connection resume right after the last revision they saw: objects
created, changed and deleted while a watcher was away reach it exactly once, and what it holds
afterwards is what a fresh listing says. The watcher is cut off by a relay while writers go on
(tests/faults.py), or the whole server restarts."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bus import natsserver, subjects
from bus.client import Client
from bus.connection import close, connect
from bus.events import make_event, read
from bus.informer import Informer
from bus.meta import ObjectMeta, ObjectReference
from bus.resources import Event, Pod
from bus.resources.pod import Container, PodSpec
from bus.store import Store, StoreConfig, WatchEvent
from tests.faults import Relay, outage


def pod(name: str, namespace: str, **labels: str) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=namespace, labels=labels),
        spec=PodSpec(containers=[Container(name="main", image="busybox:local")]),
    )


@pytest.fixture
def space() -> str:
    return f"w-{uuid.uuid4().hex[:8]}"


@dataclass
class Tap:
    """A watch consumed in the background: what it delivered, and waits for its markers."""

    events: list[WatchEvent] = field(default_factory=list)
    held: dict[str, Any] = field(default_factory=dict)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def consume(self, watch: AsyncIterator[WatchEvent]) -> None:
        async for event in watch:
            self.events.append(event)
            if event.object is not None:
                if event.type == "DELETED":
                    self.held.pop(event.key, None)
                else:
                    self.held[event.key] = event.object
            async with self.arrived:
                self.arrived.notify_all()

    async def until(self, predicate: Any, *, within: float = 30.0) -> None:
        async with asyncio.timeout(within), self.arrived:
            await self.arrived.wait_for(lambda: predicate(self))

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e.type == kind)

    def changes(self) -> list[tuple[str, int]]:
        return [(e.key, e.revision) for e in self.events if e.type in ("ADDED", "MODIFIED", "DELETED")]


@contextlib.asynccontextmanager
async def tapped(store: Store, namespace: str) -> AsyncIterator[Tap]:
    tap = Tap()
    task = asyncio.create_task(tap.consume(store.watch(Pod, namespace)))
    try:
        await tap.until(lambda t: t.count("SYNCED") == 1 or task.done())
        yield tap
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def versions(objects: Any) -> dict[str, str]:
    return {o.metadata.name: o.metadata.resource_version for o in objects}


async def change_everything(store: Store, space: str) -> None:
    """While the watcher is away: a change twice over, a delete, a create, a create-then-delete."""
    changed = await store.get(Pod, space, "b")
    for version in ("2", "3"):
        changed.metadata.labels = {"v": version}
        changed = await store.update(changed)
    await store.delete(await store.get(Pod, space, "c"))
    await store.create(pod("d", space))
    await store.delete(await store.create(pod("e", space)))


async def test_a_watch_cut_off_resumes_with_exactly_what_it_missed(
    nats_url: str, store: Store, space: str
) -> None:
    for name in ("a", "b", "c"):
        await store.create(pod(name, space))
    async with Relay(nats_url) as relay:
        nc = await connect(relay.url, name="test-watcher")
        try:
            async with tapped(Store(nc.jetstream()), space) as tap:
                async with relay.cut():
                    await tap.until(lambda t: t.count("STALE") == 1)
                    await change_everything(store, space)
                await tap.until(lambda t: t.count("SYNCED") == 2)
                listing, _ = await store.list(Pod, space)
                assert versions(tap.held.values()) == versions(listing)
                changes = tap.changes()
                assert len(changes) == len(set(changes)), "a change was delivered twice"
                revisions = [revision for _, revision in changes]
                assert revisions == sorted(revisions)
                # Only the latest revision of what changed twice: one ADDED of b, one MODIFIED.
                assert [e.type for e in tap.events if e.key.endswith(".b")] == ["ADDED", "MODIFIED"]
                assert [e.type for e in tap.events if e.key.endswith(".c")] == ["ADDED", "DELETED"]
                assert not [e for e in tap.events if e.key.endswith(".e")]  # came and went unseen
                # And it is live again: a change now arrives.
                await store.create(pod("f", space))
                await tap.until(lambda t: "f" in versions(t.held.values()))
        finally:
            await close(nc)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[natsserver.NatsServer]:
    own = natsserver.start(tmp_path / "nats", log_file=tmp_path / "nats.log")
    yield own
    own.stop()


@pytest.mark.parametrize("down_for", [0.2, 3.0])
async def test_a_watch_resumes_after_the_server_restarts(
    server: natsserver.NatsServer, space: str, down_for: float
) -> None:
    writer_nc = await connect(server.url, name="test-writer")
    watcher_nc = await connect(server.url, name="test-watcher")
    try:
        store = Store(writer_nc.jetstream(), StoreConfig())
        await store.ensure_buckets()  # as the API does; no API runs on this server
        for name in ("a", "b", "c"):
            await store.create(pod(name, space))
        async with tapped(Store(watcher_nc.jetstream()), space) as tap:
            await store.create(pod("just-before", space))  # the watcher may or may not see it first
            await outage(server, down_for)
            await tap.until(lambda t: t.count("STALE") == 1 and t.count("SYNCED") == 2)
            await change_everything(store, space)
            await tap.until(lambda t: {"a", "b", "d", "just-before"} == set(versions(t.held.values())))
            listing, _ = await store.list(Pod, space)
            assert versions(tap.held.values()) == versions(listing)
            changes = tap.changes()
            assert len(changes) == len(set(changes)), "a change was delivered twice"
    finally:
        await close(writer_nc)
        await close(watcher_nc)


async def test_an_informer_is_not_live_while_cut_off_and_catches_up(
    nats_url: str, store: Store, space: str
) -> None:
    for name in ("a", "b", "c"):
        await store.create(pod(name, space))
    told: list[tuple[str, str, str]] = []
    async with Relay(nats_url) as relay:
        nc = await connect(relay.url, name="test-informer")
        informer: Informer[Pod] = Informer(Store(nc.jetstream()), Pod, space)
        liveness: asyncio.Queue[bool] = asyncio.Queue()
        informer.on_live(liveness.put_nowait)

        def on_change(change: str, old: Pod | None, new: Pod | None) -> None:
            obj = new if new is not None else old
            assert obj is not None
            told.append((change, obj.metadata.name, obj.metadata.resource_version))

        informer.on_change(on_change)
        running = asyncio.create_task(informer.run())
        try:
            assert await asyncio.wait_for(liveness.get(), 30) is True
            async with relay.cut():
                assert await asyncio.wait_for(liveness.get(), 30) is False
                assert not informer.live
                await change_everything(store, space)
            assert await asyncio.wait_for(liveness.get(), 30) is True
            listing, _ = await store.list(Pod, space)
            assert versions(informer.items()) == versions(listing)
            assert len(told) == len(set(told)), "a handler heard of a change twice"
            assert [c for c, name, _ in told if name == "c"] == ["ADDED", "DELETED"]
        finally:
            running.cancel()
            await close(nc)


async def test_following_events_resumes_without_loss_or_repeat(
    nats_url: str, client: Client, ns: str
) -> None:
    def event(i: int) -> Event:
        involved = ObjectReference(kind="Pod", namespace=ns, name=f"p{i}", api_version="v1")
        return make_event(involved, reason="Tested", message=f"event {i}", component="test")

    await client.create(event(0))
    async with Relay(nats_url) as relay:
        nc = await connect(relay.url, name="test-events")
        received: list[str] = []
        arrived = asyncio.Condition()

        async def follow() -> None:
            async for got in read(nc.jetstream(), subject_filter=subjects.events_filter(ns), follow=True):
                received.append(got.message)
                async with arrived:
                    arrived.notify_all()

        async def until(count: int) -> None:
            async with asyncio.timeout(30), arrived:
                await arrived.wait_for(lambda: len(received) >= count)

        following = asyncio.create_task(follow())
        try:
            await until(1)
            async with relay.cut():
                for i in range(1, 6):
                    await client.create(event(i))
            await until(6)
            await client.create(event(6))
            await until(7)
            assert received == [f"event {i}" for i in range(7)]
        finally:
            following.cancel()
            await close(nc)
