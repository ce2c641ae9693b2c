"""While the API is gone (NATS still up), a node agent keeps its pods running and restarts a
container that exits, with the discovery variables of the Services it last listed, as the
kubelet restarts containers from its informer's cache; it serves logs and exec meanwhile.
Its own control plane (nats-server, API) for the module, since the API is stopped here."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator

import pytest

from bus.errors import NotFound
from bus.meta import ObjectMeta
from bus.resources import Pod, Service
from bus.resources.networking import ServicePort, ServiceSpec
from bus.streams import ExecRequest, LogsRequest, read_logs, run_exec
from tests.cluster import ControlPlane
from tests.conftest import wait_for_components
from tests.nodeagent.test_agent_docker import container, pod, running
from tests.waiting import wait_for, wait_gone

# Prints its discovery variable at each start; exits once when told to (exec touch stop).
EXITS_ONCE = "echo db=$DB_SERVICE_PORT; while [ ! -e stop ]; do sleep 0.2; done; rm stop; exit 1"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane.running(tmp_path_factory.mktemp("api-outage")) as plane:
        yield plane


async def test_a_container_restarts_while_the_api_is_gone(plane: ControlPlane) -> None:
    agent = plane.start_agent("process")
    api = plane.services[0]
    async with plane.connect() as (client, store):
        ns = await plane.namespace(client)
        spec = ServiceSpec(ports=[ServicePort(port=5432)], selector={"app": "db"})
        await client.create(Service(metadata=ObjectMeta(name="db", namespace=ns), spec=spec))
        await client.create(pod("loner", ns, agent.name, container(EXITS_ONCE)))
        await wait_for(store, Pod, ns, "loner", running)
        try:
            api.terminate()
            api.wait(20)
            stop = ExecRequest(namespace=ns, pod="loner", command=["touch", "stop"])
            assert (await run_exec(client.nc, agent.name, stop)).exit_code == 0
            async with asyncio.timeout(30):
                # Asked of the agent itself, now and then: without the API no status is written.
                for _ in itertools.count():
                    if await restarted(client.nc, agent.name, ns):
                        break
                    await asyncio.sleep(0.2)
                current = LogsRequest(namespace=ns, pod="loner", follow=True)
                async for chunk in read_logs(client.nc, agent.name, current):
                    assert chunk == b"db=5432\n"  # started with the Services it listed before
                    break
        finally:
            if api.poll() is not None:
                plane.services.remove(api)
                plane.start_service("services.api")
                await wait_for_components(plane.url, "steer-api", 1)
        back = await wait_for(
            store,
            Pod,
            ns,
            "loner",
            lambda p: running(p) and p.status.container_statuses[0].restart_count == 1,
        )
        last = back.status.container_statuses[0].last_state.terminated
        assert last is not None and last.exit_code == 1
        with contextlib.suppress(NotFound):
            await client.delete(Pod, "loner", ns, grace_period_seconds=0)
        await wait_gone(store, Pod, ns, "loner")


async def restarted(nc: object, node: str, ns: str) -> bool:
    """Whether the container now running is a second one (`logs --previous` has the first)."""
    previous = LogsRequest(namespace=ns, pod="loner", previous=True)
    try:
        return b"".join([c async for c in read_logs(nc, node, previous)]) == b"db=5432\n"  # type: ignore[arg-type]
    except NotFound:
        return False
