"""Node-scoped subjects: what a node agent may do with its name, and the pod feed it gets."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from bus import subjects
from bus.client import Client
from bus.errors import Forbidden, NotFound
from bus.meta import ObjectMeta
from bus.protocol import FEED_EVENT_HEADER, NODE_LEASE_NAMESPACE
from bus.resources import Deployment, Event, Lease, Node, Pod
from bus.resources.pod import Container, PodSpec
from bus.resources.records import LeaseSpec


def pod(name: str, namespace: str, node: str = "") -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=PodSpec(containers=[Container(name="main", image="busybox:local")], node_name=node),
    )


@pytest.fixture
def node() -> str:
    return f"n-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def agent(nc: Any, api_servers: object, node: str) -> Client:
    return Client(nc, node=node)


async def test_a_node_registers_itself_only(agent: Client, node: str) -> None:
    created = await agent.create(Node(metadata=ObjectMeta(name=node)))
    created.status.allocatable = {"cpu": "2"}
    assert (await agent.update_status(created)).status.allocatable == {"cpu": "2"}
    with pytest.raises(Forbidden, match="other than its own"):
        await agent.create(Node(metadata=ObjectMeta(name=node + "-other")))


async def test_a_node_sees_only_its_own_pods(client: Client, agent: Client, ns: str, node: str) -> None:
    await client.create(pod("mine", ns, node))
    await client.create(pod("theirs", ns, node + "-x"))
    await client.create(pod("unbound", ns))
    assert [p.metadata.name for p in await agent.list(Pod, ns)] == ["mine"]
    assert [p.metadata.name for p in await agent.list(Pod, "*", field_selector="status.phase=Pending")] == [
        "mine"
    ]
    assert (await agent.get(Pod, "mine", ns)).spec.node_name == node
    with pytest.raises(Forbidden, match="bound elsewhere"):
        await agent.get(Pod, "theirs", ns)


async def test_a_node_reports_status_and_finishes_deletion_of_its_pods(
    client: Client, agent: Client, ns: str, node: str
) -> None:
    mine = await client.create(pod("mine", ns, node))
    theirs = await client.create(pod("theirs", ns, node + "-x"))
    mine.status.phase = "Running"
    assert (await agent.update_status(mine)).status.phase == "Running"
    with pytest.raises(Forbidden):
        await agent.update_status(theirs)
    with pytest.raises(Forbidden):
        await agent.delete(Pod, "theirs", ns, grace_period_seconds=0)
    await client.delete(Pod, "mine", ns)
    assert (await client.get(Pod, "mine", ns)).metadata.deletion_timestamp is not None
    await agent.delete(Pod, "mine", ns, grace_period_seconds=0)
    with pytest.raises(NotFound):
        await client.get(Pod, "mine", ns)


async def test_a_node_keeps_only_its_own_lease(agent: Client, node: str) -> None:
    lease = Lease(
        metadata=ObjectMeta(name=node, namespace=NODE_LEASE_NAMESPACE), spec=LeaseSpec(holder_identity=node)
    )
    created = await agent.create(lease)
    created.spec.lease_duration_seconds = 40
    assert (await agent.update(created)).spec.lease_duration_seconds == 40
    with pytest.raises(Forbidden):
        await agent.create(Lease(metadata=ObjectMeta(name=node + "-x", namespace=NODE_LEASE_NAMESPACE)))
    with pytest.raises(Forbidden):
        await agent.create(Lease(metadata=ObjectMeta(name=node, namespace="default")))


async def test_a_node_may_record_events_but_not_touch_workloads(agent: Client, ns: str) -> None:
    from bus.events import make_event
    from bus.meta import ObjectReference

    event = make_event(
        ObjectReference(kind="Pod", namespace=ns, name="p"), reason="Pulled", message="ok", component="n"
    )
    assert (await agent.create(event)).reason == "Pulled"
    with pytest.raises(Forbidden):
        await agent.list(Deployment, ns)
    with pytest.raises(Forbidden):
        await agent.list(Event, ns)


async def test_garbage_on_a_node_subject(nc: Any, api_servers: object, node: str) -> None:
    reply = await nc.request(subjects.node(node, "create", "nodes", None), b"{not json", timeout=5)
    assert msgspec.json.decode(reply.data)["reason"] == "BadRequest"


async def test_the_feed_tells_a_node_of_its_pods(client: Client, nc: Any, ns: str, node: str) -> None:
    feed = await nc.subscribe(subjects.node_feed(node))
    await client.create(pod("other", ns, node + "-x"))
    await client.create(pod("mine", ns, node))
    created = await feed.next_msg(timeout=5)
    assert created.headers[FEED_EVENT_HEADER] == "MODIFIED"
    assert msgspec.json.decode(created.data, type=Pod).metadata.name == "mine"
    await client.delete(Pod, "mine", ns)
    terminating = msgspec.json.decode((await feed.next_msg(timeout=5)).data, type=Pod)
    assert terminating.metadata.deletion_timestamp is not None
    await client.delete(Pod, "mine", ns, grace_period_seconds=0)
    gone = await feed.next_msg(timeout=5)
    assert gone.headers[FEED_EVENT_HEADER] == "DELETED"
    await feed.unsubscribe()
