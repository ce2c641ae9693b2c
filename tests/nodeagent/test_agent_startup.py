"""A starting node agent serves its Service ports first: the service proxy needs only a listing
of Services and Endpoints, so it does not wait for the runtime, the adoption of the pods or the
node's registration (after a SIGKILL, the node's Service ports are down until it serves)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import pytest

from bus.client import Client
from bus.errors import NotFound
from bus.meta import ObjectMeta
from bus.resources import Node, Service
from bus.resources.networking import ServicePort, ServiceSpec
from bus.store import Store
from tests.agents import StartAgent, node_ready
from tests.waiting import wait_for


@pytest.fixture
def silent_engine() -> Iterator[int]:
    """A "Docker engine" that takes connections and never answers: the auto runtime waits its
    probe out before it settles for the process runtime."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


async def until_listening(address: str, port: int) -> None:
    async with asyncio.timeout(30):
        while True:
            try:
                _, writer = await asyncio.open_connection(address, port)
            except ConnectionRefusedError:
                await asyncio.sleep(0.02)  # not yet: the agent is starting
                continue
            writer.close()
            return


async def test_the_proxy_serves_before_the_node_registers(
    client: Client,
    store: Store,
    ns: str,
    start_agent: StartAgent,
    silent_engine: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{silent_engine}")
    agent = await start_agent("auto", wait=False)
    port = free_port(agent.address)
    spec = ServiceSpec(ports=[ServicePort(port=port)], selector={"app": "early"})
    await client.create(Service(metadata=ObjectMeta(name="early", namespace=ns), spec=spec))
    await until_listening(agent.address, port)
    with contextlib.suppress(NotFound):  # not yet registered: the runtime's probe is still waiting
        node = await client.get(Node, agent.name, "")
        raise AssertionError(f"the node registered before its proxy served: {node.status}")
    await wait_for(store, Node, "", agent.name, node_ready)  # and then the rest follows
