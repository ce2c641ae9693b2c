"""Poison in the store, as the API and `steer` meet it (the value is written with a raw KV put): the
API lists everything else and warns, a get by name says the object could not be read, a delete by
name removes it, and one Warning event names the bucket and key."""

from __future__ import annotations

import logging

import nats.js.errors
import pytest

from bus import kinds, subjects
from bus.client import Client
from bus.errors import Internal, NotFound
from bus.meta import ObjectMeta
from bus.resources import Event, Namespace, Pod
from bus.resources.pod import Container, PodSpec
from bus.store import Store
from bus.unreadable import REASON
from tests.waiting import wait_for_all


def pod(name: str, namespace: str) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=PodSpec(containers=[Container(name="main", image="busybox:local")]),
    )


async def poison(store: Store, kind: str, namespace: str, name: str) -> int:
    """A raw KV put of a value that is not a `kind`; its revision."""
    kv = await store.bucket(kinds.BY_KIND[kind])
    return await kv.put(subjects.key(namespace, name), b'{"not": "a ' + kind.encode() + b'"}')


async def unreadable_events(client: Client, namespace: str, name: str) -> list[Event]:
    events = await client.list(Event, namespace)
    return [e for e in events if e.reason == REASON and e.involved_object.name == name]


async def test_the_api_serves_around_poison_and_deletes_it_by_name(
    client: Client, store: Store, ns: str
) -> None:
    await client.create(pod("good", ns))
    revision = await poison(store, "Pod", ns, "bad")
    warnings: list[str] = []
    client.on_warning = warnings.append
    for _ in range(4):  # both API replicas meet it, more than once
        assert [p.metadata.name for p in await client.list(Pod, ns)] == ["good"]
    assert len(warnings) == 4 and all('"bad"' in w and f"revision {revision}" in w for w in warnings)
    with pytest.raises(Internal, match=r'pods "bad" in namespace .* could not be read') as failed:
        await client.get(Pod, "bad", ns)
    assert subjects.bucket("pods") in failed.value.message and subjects.key(ns, "bad") in failed.value.message
    await wait_for_all(store, Event, ns, lambda events: any(e.reason == REASON for e in events))
    [event] = await unreadable_events(client, ns, "bad")  # once, however often it was met
    assert event.type == "Warning" and subjects.bucket("pods") in event.message
    await client.delete(Pod, "bad", ns)
    with pytest.raises(NotFound):
        await client.get(Pod, "bad", ns)
    assert [p.metadata.name for p in await client.list(Pod, ns)] == ["good"]
    assert len(warnings) == 4  # nothing is left out any more


async def test_deleting_a_namespace_removes_its_poison_too(client: Client, store: Store, ns: str) -> None:
    await poison(store, "Pod", ns, "bad")
    await client.delete(Namespace, ns, "")
    kv = await store.bucket(kinds.BY_KIND["Pod"])
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await kv.get(subjects.key(ns, "bad"))


async def test_a_component_logs_the_same_listing_warning_once(
    client: Client, store: Store, ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    await poison(store, "Pod", ns, "bad")
    caplog.set_level(logging.WARNING, logger="bus.client")
    for _ in range(3):  # a node agent lists its pods every resync
        await client.list(Pod, ns)
    [record] = [r for r in caplog.records if r.name == "bus.client"]
    assert '"bad"' in record.getMessage()
