"""Nothing a peer sends can stop a node agent: malformed, out-of-range and hostile logs and exec
requests each get an error answer naming the problem, junk on the pod feed and the proxy's
feeds is ignored, and the agent goes on serving (process runtime, a real agent process)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import msgspec
import pytest
from nats.aio.client import Client as NATS

from bus import subjects
from bus.client import Client
from bus.errors import NotFound, Status
from bus.meta import ObjectMeta
from bus.resources import Pod, Service
from bus.resources.networking import ServicePort, ServiceSpec
from bus.store import Store
from bus.streams import STREAM_HEADER, ExecRequest, LogsRequest, read_logs, run_exec
from tests.nodeagent.conftest import StartAgent
from tests.nodeagent.test_agent_docker import container, pod, running
from tests.waiting import wait_for, wait_gone

TALKER = "echo hello; sleep 600"


async def ask(nc: NATS, subject: str, payload: bytes) -> tuple[str, Status | None]:
    """The first message the agent answers with: its stream kind, and the error if it is one."""
    reply = await nc.request(subject, payload, timeout=10)
    kind = (reply.headers or {}).get(STREAM_HEADER, "")
    if kind == "error":
        return kind, msgspec.json.decode(reply.data, type=Status)
    return kind, None


def logs(ns: str, **fields: object) -> bytes:
    return json.dumps({"namespace": ns, "pod": "talker", **fields}).encode()


def execs(ns: str, **fields: object) -> bytes:
    return json.dumps({"namespace": ns, "pod": "talker", "command": ["true"], **fields}).encode()


@pytest.fixture
async def talker(client: Client, store: Store, ns: str, start_agent: StartAgent) -> object:
    agent = await start_agent("process")
    await client.create(pod("talker", ns, agent.name, container(TALKER)))
    await wait_for(store, Pod, ns, "talker", running)
    yield agent
    with contextlib.suppress(NotFound):
        await client.delete(Pod, "talker", ns, grace_period_seconds=0)
    await wait_gone(store, Pod, ns, "talker")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"sinceSeconds": -5}, "sinceSeconds"),
        ({"tail": -1}, "tail"),
        ({"tail": 10**30}, "tail"),
        ({"pod": "p" * 5000}, "pod"),
        ({"namespace": "n" * 5000}, "namespace"),
        ({"container": "c\x00"}, "container"),
    ],
)
async def test_logs_request_fields_are_bounded(
    fields: dict[str, object], field: str, nc: NATS, ns: str, talker: object
) -> None:
    agent = talker
    kind, error = await ask(nc, subjects.node_stream(agent.name, "logs", ns), logs(ns, **fields))  # type: ignore[attr-defined]
    assert kind == "error" and error is not None and error.code == 422
    assert error.details is not None and [c.field for c in error.details.causes] == [field]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"timeoutSeconds": 1e300}, "timeoutSeconds"),
        ({"timeoutSeconds": 0}, "timeoutSeconds"),
        ({"command": ["echo", "a\x00b"]}, "command[1]"),
        ({"command": ["x" * 300_000]}, "command"),
        ({"pod": "p" * 5000}, "pod"),
    ],
)
async def test_exec_request_fields_are_bounded(
    fields: dict[str, object], field: str, nc: NATS, ns: str, talker: object
) -> None:
    agent = talker
    kind, error = await ask(nc, subjects.node_stream(agent.name, "exec", ns), execs(ns, **fields))  # type: ignore[attr-defined]
    assert kind == "error" and error is not None and error.code == 422
    assert error.details is not None and [c.field for c in error.details.causes] == [field]


async def test_nothing_a_peer_sends_stops_the_agent(
    client: Client, nc: NATS, ns: str, talker: object
) -> None:
    agent = talker
    node: str = agent.name  # type: ignore[attr-defined]
    # Far longer ago than the epoch: all the logs (it once overflowed and took the agent down).
    ancient = LogsRequest(namespace=ns, pod="talker", since_seconds=1e12)
    assert b"".join([chunk async for chunk in read_logs(nc, node, ancient)]) == b"hello\n"
    for payload in (b"", b"\xff\xfe", b"[]", b'{"namespace": 1}', b"{" * 10_000):
        for action in ("logs", "exec"):
            kind, error = await ask(nc, subjects.node_stream(node, action, ns), payload)
            assert kind == "error" and error is not None and error.code == 400, (action, payload)
    # Junk and hostile objects on the feeds: ignored, logged.
    huge = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "huge", "namespace": ns, "resourceVersion": "1"},
        "spec": {"ports": [{"port": 70000}, {"port": 8080, "nodePort": -1}], "type": "NodePort"},
    }
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "fine", "namespace": ns, "resourceVersion": "999999999"},
        "subsets": [
            {"addresses": [{"ip": "127.0.0.1\x00"}, {"ip": "127.0.0.1"}], "ports": [{"port": 99999}]}
        ],
    }
    stray = {"metadata": {"name": "x", "namespace": ns}, "spec": {"nodeName": node, "containers": []}}
    for subject, payload in [
        (subjects.node_feed(node), b"\x00junk"),
        (subjects.node_feed(node), json.dumps(stray).encode()),
        (subjects.cluster_feed("services"), json.dumps(huge).encode()),
        (subjects.cluster_feed("endpoints"), json.dumps(endpoints).encode()),
        (subjects.cluster_feed("services"), b"\xff"),
    ]:
        await nc.publish(subject, payload)
    await nc.flush()
    # A Service after them: once the proxy serves it, it has dealt with all of the above.
    port = free_port(agent.address)  # type: ignore[attr-defined]
    spec = ServiceSpec(ports=[ServicePort(port=port)], selector={"app": "none"})
    await client.create(Service(metadata=ObjectMeta(name="fine", namespace=ns), spec=spec))
    await until_served(agent.address, port)  # type: ignore[attr-defined]
    # Still serving: a logs request and an exec, each answered in full.
    request = LogsRequest(namespace=ns, pod="talker")
    assert b"".join([c async for c in read_logs(nc, node, request)]) == b"hello\n"
    command = ExecRequest(namespace=ns, pod="talker", command=["sh", "-c", "echo $POD_NAME"])
    reply = await run_exec(nc, node, command)
    assert (reply.exit_code, reply.output) == (0, b"talker\n")
    assert agent.proc is not None and agent.proc.poll() is None  # type: ignore[attr-defined]


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


async def until_served(address: str, port: int) -> None:
    """Until the proxy accepts connections on the port; it then resets them (no backend works)."""
    async with asyncio.timeout(30):
        while True:
            try:
                reader, writer = await asyncio.open_connection(address, port)
            except ConnectionRefusedError:
                await asyncio.sleep(0.05)  # not listening yet
                continue
            with contextlib.suppress(ConnectionResetError):
                assert await reader.read() == b""
            writer.close()
            return
