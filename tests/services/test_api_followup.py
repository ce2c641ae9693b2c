"""After the reply: a failure to record or publish an event is logged and retried, never fatal.

The API records lifecycle events once it has replied. Publishing them to the events stream is a
JetStream request that can time out (or find no stream at all); that raw NATS error used to
escape the request's task and end the API's task group, so the API process exited. These tests
break the events stream of their own nats-server and check that the API lives on, tries again,
and delivers the event once the stream is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import nats.js.errors
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from bus import events as bus_events
from bus import subjects
from bus.client import Client
from bus.connection import connect
from bus.meta import ObjectMeta
from bus.resources import Pod
from bus.resources.pod import Container, PodSpec
from tests.cluster import ControlPlane


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane.running(tmp_path_factory.mktemp("followup")) as plane:
        yield plane


@pytest.fixture
async def nc(plane: ControlPlane) -> AsyncIterator[NATS]:
    conn = await connect(plane.url, name="followup-test")
    try:
        yield conn
    finally:
        await conn.close()


def pod(name: str, namespace: str) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=PodSpec(containers=[Container(name="main", image="busybox:local")]),
    )


async def created_event_in_stream(nc: NATS, namespace: str, name: str) -> None:
    """Wait until the Created event of pod `name` can be read from the events stream."""
    subject = subjects.events_filter(namespace, "Pod", name)
    async for event in bus_events.read(nc.jetstream(), subject_filter=subject, follow=True):
        if event.reason == "Created":
            return


async def without_events_stream(nc: NATS) -> None:
    js = nc.jetstream()
    try:
        await js.delete_stream(subjects.EVENTS_STREAM)
    except nats.js.errors.NotFoundError:
        pass


async def test_event_publish_timing_out_after_the_reply_is_retried_not_fatal(
    plane: ControlPlane, nc: NATS
) -> None:
    api = plane.services[0]
    client = Client(nc, timeout=5.0)
    namespace = await ControlPlane.namespace(client)
    await without_events_stream(nc)
    # Something answers nothing on the events subjects: each JetStream publish now times out.
    attempts: asyncio.Queue[Msg] = asyncio.Queue()
    # Only the pod's events: the namespace's own Created event may still be on its way.
    pod_events = subjects.events_filter(namespace, "Pod", "web")
    blackhole = await nc.subscribe(pod_events, cb=attempts.put)
    try:
        await client.create(pod("web", namespace))  # replied at once; the Created event follows
        async with asyncio.timeout(60):
            first, second = await attempts.get(), await attempts.get()  # a retry: the API lived on
        assert first.data == second.data
    finally:
        await blackhole.unsubscribe()
        await bus_events.ensure_stream(nc.jetstream())
    assert api.poll() is None, "the API exited"
    async with asyncio.timeout(60):
        await created_event_in_stream(nc, namespace, "web")
    assert (await client.create(pod("after", namespace))).metadata.uid


async def test_no_events_stream_at_all_is_not_fatal(plane: ControlPlane, nc: NATS) -> None:
    """JetStream answers "no responders": a raw NATS error, not one of ours."""
    api = plane.services[0]
    client = Client(nc, timeout=5.0)
    namespace = await ControlPlane.namespace(client)
    await without_events_stream(nc)
    try:
        await client.create(pod("web", namespace))
        # The API is still there to answer, whatever its follow-up met meanwhile.
        for i in range(5):
            await client.create(pod(f"more-{i}", namespace))
    finally:
        await bus_events.ensure_stream(nc.jetstream())
    assert api.poll() is None, "the API exited"
    async with asyncio.timeout(60):
        await created_event_in_stream(nc, namespace, "web")
