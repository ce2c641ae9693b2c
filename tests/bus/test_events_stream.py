"""The events stream against a real nats-server: replay by subject and time, and following."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest

from bus import events, subjects
from bus.codec import encode
from bus.meta import ObjectReference


@pytest.fixture
async def js(nc: Any) -> Any:
    jetstream = nc.jetstream()
    await events.ensure_stream(jetstream)
    return jetstream


def event_for(namespace: str, name: str, reason: str) -> Any:
    involved = ObjectReference(kind="Pod", namespace=namespace, name=name)
    return events.make_event(involved, reason=reason, message=f"{reason} {name}", component="test")


async def publish(js: Any, event: Any) -> None:
    await js.publish(events.subject_of(event), encode(event))


async def test_replay_of_one_object_finds_its_only_event_every_time(js: Any) -> None:
    # One matching message is delivered before the consumer info answers; it must still count.
    ns = f"e-{uuid.uuid4().hex[:8]}"
    await publish(js, event_for(ns, "a", "Started"))
    await publish(js, event_for(ns, "b", "Started"))
    for _ in range(20):
        found = [e async for e in events.read(js, subject_filter=subjects.events_filter(ns, "Pod", "a"))]
        assert [e.involved_object.name for e in found] == ["a"]


async def test_replay_of_nothing_ends_at_once(js: Any) -> None:
    ns = f"e-{uuid.uuid4().hex[:8]}"
    assert [e async for e in events.read(js, subject_filter=subjects.events_filter(ns))] == []


async def test_since_skips_older_events(js: Any) -> None:
    ns = f"e-{uuid.uuid4().hex[:8]}"
    old = event_for(ns, "a", "Old")
    await publish(js, old)
    info = await js.stream_info(subjects.EVENTS_STREAM)
    assert info.state.messages >= 1
    recent = [
        e async for e in events.read(js, subject_filter=subjects.events_filter(ns), since=timedelta(hours=1))
    ]
    assert [e.reason for e in recent] == ["Old"]
    none = [
        e
        async for e in events.read(
            js, subject_filter=subjects.events_filter(ns), since=timedelta(microseconds=1)
        )
    ]
    assert none == []


async def test_follow_yields_new_events_in_order(js: Any) -> None:
    ns = f"e-{uuid.uuid4().hex[:8]}"
    await publish(js, event_for(ns, "a", "First"))
    stream = events.read(js, subject_filter=subjects.events_filter(ns), follow=True)
    assert (await anext(stream)).reason == "First"
    await publish(js, event_for(ns, "a", "Second"))
    await publish(js, event_for(ns, "a", "Third"))
    assert [(await asyncio.wait_for(anext(stream), 5)).reason for _ in range(2)] == ["Second", "Third"]
    await stream.aclose()
