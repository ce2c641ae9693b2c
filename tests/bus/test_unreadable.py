"""Poison in the store: values that do not decode as their kind (written here with a raw KV put) are
left out of lists and watches and reported once per key and revision; everything else is served."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import pytest

from bus import kinds, subjects
from bus.codec import encode
from bus.meta import ObjectMeta
from bus.resources import Pod
from bus.resources.pod import Container, PodSpec
from bus.store import Store, WatchEvent
from bus.unreadable import UnreadableEntry, UnreadableError


def pod(name: str, namespace: str) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=PodSpec(containers=[Container(name="main", image="busybox:local")]),
    )


@pytest.fixture
def space() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


async def poison(store: Store, namespace: str, name: str, value: bytes) -> int:
    kv = await store.bucket(kinds.BY_KIND["Pod"])
    return await kv.put(subjects.key(namespace, name), value)


def poisons(space: str) -> dict[str, bytes]:
    """Values that are not what their key says: not JSON; JSON of the wrong shape; a valid pod,
    but stored under another pod's key."""
    return {
        "not-json": b"\x00not json at all",
        "wrong-shape": b'{"kind": "Pod", "metadata": {"name": "wrong-shape"}, "spec": "nope"}',
        "wrong-key": encode(pod("someone-else", space)),
    }


async def write_poisons(store: Store, space: str) -> None:
    for name, value in poisons(space).items():
        await poison(store, space, name, value)


async def test_a_listing_leaves_poison_out_and_says_what_it_left(
    store: Store, space: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="bus.store")
    await store.create(pod("good", space))
    await write_poisons(store, space)
    told: list[UnreadableEntry] = []
    store.on_unreadable(told.append)
    for _ in range(3):  # reading again and again reports each one once
        left_out: list[UnreadableEntry] = []
        items, _ = await store.list(Pod, space, unreadable=left_out)
        assert [p.metadata.name for p in items] == ["good"]
        assert sorted(e.name for e in left_out) == sorted(poisons(space))
    assert sorted(e.name for e in told) == sorted(poisons(space))
    logged = [r.getMessage() for r in caplog.records if space in r.getMessage()]
    assert len(logged) == len(poisons(space))
    wrong_key = next(e for e in told if e.name == "wrong-key")
    assert "another key" in wrong_key.problem
    assert f"bucket {subjects.bucket('pods')}" in wrong_key.message()


async def test_a_get_of_poison_says_what_is_wrong_and_a_delete_removes_it(store: Store, space: str) -> None:
    revision = await poison(store, space, "bad", b"garbage")
    with pytest.raises(UnreadableError) as failed:
        await store.get(Pod, space, "bad")
    entry = failed.value.entry
    assert entry.revision == revision and entry.key == subjects.key(space, "bad")
    assert 'pods "bad" in namespace' in failed.value.message and "could not be read" in failed.value.message
    await store.delete_unreadable(entry)
    items, _ = await store.list(Pod, space)
    assert items == []


async def test_a_watch_skips_poison_and_drops_a_known_object_that_turns_into_it(
    store: Store, space: str
) -> None:
    await store.create(pod("a", space))
    await store.create(pod("b", space))
    await poison(store, space, "bad", b"garbage")
    seen: asyncio.Queue[WatchEvent] = asyncio.Queue()
    met: list[UnreadableEntry] = []

    async def consume() -> None:
        async for event in store.watch(Pod, space, unreadable=met.append):
            await seen.put(event)

    watching = asyncio.create_task(consume())
    try:

        async def next_event() -> WatchEvent:
            return await asyncio.wait_for(seen.get(), 30)

        listed = [await next_event() for _ in range(3)]
        assert [(e.type, e.object.metadata.name if e.object else "") for e in listed] == [
            ("ADDED", "a"),
            ("ADDED", "b"),
            ("SYNCED", ""),
        ]
        await poison(store, space, "a", b"now garbage")
        dropped = await next_event()
        assert (dropped.type, dropped.object.metadata.name) == ("DELETED", "a")
        await store.create(pod("c", space))  # everything else goes on as usual
        added = await next_event()
        assert (added.type, added.object.metadata.name) == ("ADDED", "c")
        assert sorted(e.name for e in met) == ["a", "bad"]
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
