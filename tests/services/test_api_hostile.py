"""Requests meant to hurt the API: it answers each with a clear error and keeps its connection.

A subject longer than nats-server's control line (4 KiB) makes the server close the publisher's
connection, so a request whose name the API put into a key unchecked cost the API its bus. These
tests run their own nats-server and API (a broken API must not take the session's down with it),
and after each one check that the API process is alive, answers, and that the server never
closed a connection for a protocol error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client as NATS

from bus import subjects
from bus.client import Client
from bus.connection import connect
from bus.meta import ObjectMeta
from bus.protocol import ERROR_CODE_HEADER
from bus.resources import Namespace, Pod
from bus.resources.pod import Container, PodSpec
from tests.cluster import ControlPlane

LONG = "a" * 5000


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane.running(tmp_path_factory.mktemp("hostile")) as plane:
        yield plane


def protocol_errors(plane: ControlPlane) -> list[str]:
    """Lines where nats-server reports a client's protocol error (it closes that connection)."""
    return [line for line in (plane.tmp / "nats.log").read_text().splitlines() if "[ERR]" in line]


@dataclass
class Bus:
    nc: NATS
    client: Client
    namespace: str

    async def ask(self, subject: str, body: bytes) -> dict[str, Any]:
        """The error Status a raw request gets back (failing if the reply is not an error)."""
        reply = await self.nc.request(subject, body, timeout=5.0)
        assert reply.headers and ERROR_CODE_HEADER in reply.headers, reply.data[:200]
        status: dict[str, Any] = msgspec.json.decode(reply.data)
        assert status["kind"] == "Status" and status["message"]
        return status


@pytest.fixture
async def bus(plane: ControlPlane) -> AsyncIterator[Bus]:
    api = plane.services[0]
    before = protocol_errors(plane)
    nc = await connect(plane.url, name="hostile")
    client = Client(nc, timeout=5.0)
    try:
        hostile = Bus(nc, client, await ControlPlane.namespace(client))
        yield hostile
        # Still there, still connected, still answering.
        assert api.poll() is None, "the API process exited"
        assert protocol_errors(plane) == before
        created = await client.create(pod("still-serving", hostile.namespace))
        assert created.metadata.resource_version
    finally:
        await nc.close()


def pod(name: str, namespace: str, **spec: Any) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=PodSpec(containers=[Container(name="main", image="busybox:local")], **spec),
    )


def cause_fields(status: dict[str, Any]) -> set[str]:
    return {cause.get("field", "") for cause in (status.get("details") or {}).get("causes", [])}


@pytest.mark.parametrize(
    ("verb", "body"),
    [
        ("get", {"name": LONG}),
        ("delete", {"name": LONG}),
        ("patch", {"name": LONG, "patch": {"metadata": {"labels": {"a": "b"}}}}),
        ("get", {"name": "web 1"}),
        ("delete", {"name": "*"}),
    ],
)
async def test_a_name_that_could_never_be_a_key_is_a_bad_request(
    bus: Bus, verb: subjects.ApiVerb, body: dict[str, Any]
) -> None:
    status = await bus.ask(subjects.api(verb, "pods", bus.namespace), msgspec.json.encode(body))
    assert status["reason"] == "BadRequest"
    assert cause_fields(status) == {"name"}
    assert len(msgspec.json.encode(status)) < 2000  # the name is not echoed back in full


async def test_a_namespace_token_that_is_no_namespace_is_a_bad_request(bus: Bus) -> None:
    subject = f"steer.api.get.pods.{'n' * 3900}"  # fits the client's control line, not the API's keys
    status = await bus.ask(subject, b'{"name": "web"}')
    assert status["reason"] == "BadRequest" and cause_fields(status) == {"namespace"}


async def test_node_scoped_requests_check_names_before_the_store(bus: Bus) -> None:
    node = "hostile-node"
    get = subjects.node(node, "get", "pods", bus.namespace)
    status = await bus.ask(get, msgspec.json.encode({"name": LONG}))
    assert status["reason"] == "BadRequest" and cause_fields(status) == {"name"}
    report = subjects.node(node, "status", "pods", bus.namespace)
    status = await bus.ask(report, msgspec.json.encode(pod(LONG, bus.namespace)))
    assert status["reason"] == "BadRequest" and cause_fields(status) == {"metadata.name"}
    status = await bus.ask(f"steer.node.{'n' * 3900}.get.nodes._", b'{"name": "x"}')
    assert status["reason"] == "BadRequest" and cause_fields(status) == {"node"}


async def test_an_event_about_an_unnameable_object_is_invalid(bus: Bus) -> None:
    """Its involved object names the subject the Event is published on."""
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "odd.1"},
        "involvedObject": {"kind": "Pod", "name": LONG, "namespace": bus.namespace},
        "reason": "Odd",
    }
    status = await bus.ask(subjects.api("create", "events", bus.namespace), msgspec.json.encode(event))
    assert status["reason"] == "Invalid" and "involvedObject.name" in cause_fields(status)


async def test_a_pod_bound_to_an_unnameable_node_is_invalid(bus: Bus) -> None:
    """A bound pod's node name is the subject the API feeds its node agent on."""
    for node_name in (LONG, "n1 PUB x", "n1.feed"):
        body = msgspec.json.encode(pod("bound", bus.namespace, node_name=node_name))
        status = await bus.ask(subjects.api("create", "pods", bus.namespace), body)
        assert status["reason"] == "Invalid" and cause_fields(status) == {"spec.nodeName"}


async def test_many_hostile_requests_at_once(bus: Bus) -> None:
    subject = subjects.api("get", "pods", bus.namespace)
    replies = await asyncio.gather(
        *(bus.ask(subject, msgspec.json.encode({"name": LONG + str(i)})) for i in range(50))
    )
    assert {status["reason"] for status in replies} == {"BadRequest"}


async def test_cluster_scoped_lookup_of_a_long_name(bus: Bus) -> None:
    status = await bus.ask(subjects.api("get", "namespaces", None), msgspec.json.encode({"name": LONG}))
    assert status["reason"] == "BadRequest"
    assert await bus.client.get(Namespace, bus.namespace, "")
