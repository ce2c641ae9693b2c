"""nats-server restarted under a running node agent: its pods run on, its service proxy keeps
forwarding while the bus is down, and once the bus is back the agent hears of new pods and
writes their status. Its own control plane (nats-server, API) for the module."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator

import pytest

from bus.meta import ObjectMeta, ObjectReference
from bus.resources import Endpoints, Pod, Service
from bus.resources.networking import EndpointAddress, EndpointPort, EndpointSubset, ServicePort, ServiceSpec
from tests.cluster import ControlPlane
from tests.conftest import wait_for_components
from tests.nodeagent.test_agent_docker import container, pod, running
from tests.nodeagent.test_agent_restart import HTTPD, WEB_PORTS, delete_all, free_port, http_body
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane.running(tmp_path_factory.mktemp("nats-restart")) as plane:
        yield plane


async def test_an_agent_rides_out_a_restart_of_nats(plane: ControlPlane) -> None:
    agent = plane.start_agent("process")
    async with plane.connect() as (client, store):
        ns = await plane.namespace(client)
        await client.create(pod("web", ns, agent.name, container(HTTPD, WEB_PORTS)))
        web = await wait_for(store, Pod, ns, "web", running)
        port = free_port(agent.address)
        spec = ServiceSpec(ports=[ServicePort(name="http", port=port)], selector={"app": "web"})
        await client.create(Service(metadata=ObjectMeta(name="web", namespace=ns), spec=spec))
        address = EndpointAddress(
            ip=agent.address, target_ref=ObjectReference(kind="Pod", name="web", uid=web.metadata.uid)
        )
        endpoint_port = EndpointPort(name="http", port=web.status.host_ports[0].host_port)
        subsets = [EndpointSubset(addresses=[address], ports=[endpoint_port])]
        await client.create(Endpoints(metadata=ObjectMeta(name="web", namespace=ns), subsets=subsets))
        await until_served(agent.address, port)

        plane.server.kill()
        assert await http_body(agent.address, port) == "web"  # forwarded with the bus down
        plane.server.start_again()
        await wait_for_components(plane.url, "steer-api", 1)
    async with plane.connect() as (client, store):  # a connection of the new server's
        await client.create(pod("late", ns, agent.name, container("sleep 600")))
        await wait_for(store, Pod, ns, "late", running)  # heard of, run, and its status written
        assert await http_body(agent.address, port) == "web"
        assert agent.proc is not None and agent.proc.poll() is None
        await delete_all(client, store, ns, ["web", "late"])


async def until_served(address: str, port: int) -> None:
    async with asyncio.timeout(30):
        for _ in itertools.count():
            with contextlib.suppress(OSError):
                if await http_body(address, port) == "web":
                    return
            await asyncio.sleep(0.05)  # the proxy has not learnt the endpoints yet
