"""The typed store against a real nats-server: CAS, listing, watching, bucket creation."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from bus import subjects
from bus.errors import AlreadyExists, Conflict, NotFound
from bus.meta import ObjectMeta
from bus.resources import Pod
from bus.resources.pod import Container, PodSpec
from bus.selectors import parse
from bus.store import Store


def pod(name: str, namespace: str, **labels: str) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=namespace, labels=labels),
        spec=PodSpec(containers=[Container(name="main", image="busybox:local")]),
    )


@pytest.fixture
def space() -> str:
    return f"s-{uuid.uuid4().hex[:8]}"


async def test_create_get_roundtrip_sets_revision(store: Store, space: str) -> None:
    created = await store.create(pod("a", space, app="web"))
    assert int(created.metadata.resource_version) > 0
    fetched = await store.get(Pod, space, "a")
    assert fetched == created


async def test_create_twice_is_already_exists(store: Store, space: str) -> None:
    await store.create(pod("a", space))
    with pytest.raises(AlreadyExists, match='"a" already exists'):
        await store.create(pod("a", space))


async def test_update_with_stale_revision_is_conflict(store: Store, space: str) -> None:
    first = await store.create(pod("a", space))
    stale_version = first.metadata.resource_version
    first.metadata.labels = {"v": "2"}
    second = await store.update(first)
    assert int(second.metadata.resource_version) > int(stale_version)
    second.metadata.labels = {"v": "3"}
    second.metadata.resource_version = stale_version
    with pytest.raises(Conflict, match="has been modified"):
        await store.update(second)
    assert (await store.get(Pod, space, "a")).metadata.labels == {"v": "2"}


async def test_delete_is_compare_and_set_and_recreate_works(store: Store, space: str) -> None:
    obj = await store.create(pod("a", space))
    stale = obj.metadata.resource_version
    obj.metadata.labels = {"x": "y"}
    obj = await store.update(obj)
    obj.metadata.resource_version = stale
    with pytest.raises(Conflict):
        await store.delete(obj)
    await store.delete(await store.get(Pod, space, "a"))
    with pytest.raises(NotFound, match='pods "a" not found'):
        await store.get(Pod, space, "a")
    again = await store.create(pod("a", space))
    assert again.metadata.name == "a"


async def test_list_filters_namespace_and_selector(store: Store, space: str) -> None:
    other = space + "-o"
    await store.create(pod("a", space, app="web"))
    await store.create(pod("b", space, app="db"))
    await store.create(pod("c", other, app="web"))
    await store.delete(await store.create(pod("gone", space, app="web")))
    items, revision = await store.list(Pod, space)
    assert [p.metadata.name for p in items] == ["a", "b"]
    assert revision >= max(int(p.metadata.resource_version) for p in items)
    web, _ = await store.list(Pod, space, selector=parse("app=web"))
    assert [p.metadata.name for p in web] == ["a"]
    everywhere, _ = await store.list(Pod, subjects.ALL, selector=parse("app=web"))
    assert {(p.metadata.namespace, p.metadata.name) for p in everywhere} >= {(space, "a"), (other, "c")}


async def test_list_of_empty_namespace(store: Store, space: str) -> None:
    assert await store.list(Pod, space) == ([], 0)


async def test_watch_lists_then_syncs_then_streams_changes(store: Store, space: str) -> None:
    await store.create(pod("a", space))
    events = store.watch(Pod, space)
    first = await anext(events)
    assert (first.type, first.object.metadata.name) == ("ADDED", "a")
    assert (await anext(events)).type == "SYNCED"
    b = await store.create(pod("b", space))
    added = await anext(events)
    assert (added.type, added.object.metadata.name) == ("ADDED", "b")
    b.metadata.labels = {"k": "v"}
    await store.update(b)
    modified = await anext(events)
    assert modified.type == "MODIFIED" and modified.object.metadata.labels == {"k": "v"}
    await store.delete(await store.get(Pod, space, "a"))
    deleted = await anext(events)
    assert deleted.type == "DELETED" and deleted.object.metadata.name == "a"
    await events.aclose()


async def test_watch_on_empty_namespace_syncs_at_once(store: Store, space: str) -> None:
    events = store.watch(Pod, space)
    assert (await asyncio.wait_for(anext(events), 5)).type == "SYNCED"
    await events.aclose()


async def test_nats_failures_become_bus_errors(nats_url: str, space: str) -> None:
    from bus.connection import connect
    from bus.errors import Unavailable

    conn = await connect(nats_url, name="closing")
    closed = Store(conn.jetstream())
    await conn.close()
    with pytest.raises(Unavailable):
        await closed.get(Pod, space, "a")


async def test_listing_never_ends_before_its_items(store: Store, space: str) -> None:
    # The items may reach us before the consumer info does; the synced point must follow them.
    for name in ("a", "b", "c"):
        await store.create(pod(name, space))
    for _ in range(20):
        items, _ = await store.list(Pod, space)
        assert [p.metadata.name for p in items] == ["a", "b", "c"]
