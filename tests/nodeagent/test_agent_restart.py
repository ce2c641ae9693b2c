"""A node agent killed with SIGKILL and started again takes back everything it ran: the same
containers keep running, on the same host ports, with the same restart counts, readiness,
last states and restart back-off; nothing is restarted and no Warning is recorded. On Docker
and on the process runtime, whose containers both outlive their agent."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from bus import subjects
from bus.client import Client
from bus.errors import NotFound
from bus.events import read
from bus.resources import Pod
from bus.store import Store
from bus.streams import ExecRequest, LogsRequest, read_logs, run_exec
from nodeagent.runtime import ContainerNotFound, ContainerSpec
from nodeagent.runtime.docker import DockerRuntime, container_config, container_name
from tests.nodeagent.conftest import StartAgent
from tests.nodeagent.test_agent_docker import container, pod, ready, restarts, running
from tests.waiting import wait_for, wait_gone

RUNTIMES = [pytest.param("docker", marks=pytest.mark.docker), "process"]
# Runs alike in a busybox container and as a host process (cwd is the container's own directory).
HTTPD = "mkdir -p www && echo $POD_NAME > www/index.html && exec busybox httpd -f -p $HOST_IP:$PORT -h www"
# Exits once (when told to, through `exec touch stop`), then runs for good.
EXITS_ONCE = "echo attempt; while [ ! -e stop ]; do sleep 0.2; done; rm stop; exit 1"
WEB_PORTS = "ports: [{name: http, containerPort: 8080}]\n"
READINESS = "readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}\n"


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def waiting_reason(p: Pod) -> str:
    state = p.status.container_statuses[0].state if p.status.container_statuses else None
    return state.waiting.reason if state is not None and state.waiting is not None else ""


@contextlib.asynccontextmanager
async def recording(store: Store, namespace: str) -> AsyncIterator[list[Pod]]:
    """Every version of the namespace's pods written while the block runs."""
    seen: list[Pod] = []
    synced = asyncio.Event()

    async def follow() -> None:
        async with contextlib.aclosing(store.watch(Pod, namespace)) as events:
            async for event in events:
                if event.type == "SYNCED":
                    synced.set()
                elif synced.is_set() and event.object is not None:
                    seen.append(event.object)

    task = asyncio.create_task(follow())
    try:
        await synced.wait()
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def warnings_since(client: Client, namespace: str, since: datetime) -> list[str]:
    js = client.nc.jetstream()
    return [
        f"{e.involved_object.name}: {e.reason}: {e.message}"
        async for e in read(js, subject_filter=subjects.events_filter(namespace))
        if e.type == "Warning" and (e.last_timestamp or since) >= since
    ]


async def delete_all(client: Client, store: Store, namespace: str, names: list[str]) -> None:
    """Process-runtime pods outlive their agent: have the agent stop them."""
    for name in names:
        with contextlib.suppress(NotFound):
            await client.delete(Pod, name, namespace, grace_period_seconds=0)
    for name in names:
        await wait_gone(store, Pod, namespace, name)


@pytest.fixture
def runtime(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
    return str(request.param)


@pytest.mark.parametrize("runtime", RUNTIMES, indirect=True)
async def test_a_killed_agent_takes_back_its_pods(
    runtime: str, client: Client, store: Store, ns: str, start_agent: StartAgent
) -> None:
    agent = await start_agent(runtime)
    fixed_port = free_port(agent.address)
    names = ["web", "fixed", "restarted", "marker"]
    try:
        await client.create(pod("web", ns, agent.name, container(HTTPD, WEB_PORTS + READINESS)))
        fixed = f"ports: [{{name: http, containerPort: 8080, hostPort: {fixed_port}}}]\n"
        await client.create(pod("fixed", ns, agent.name, container(HTTPD, fixed)))
        await client.create(pod("restarted", ns, agent.name, container(EXITS_ONCE)))
        await wait_for(store, Pod, ns, "restarted", running)
        reply = await run_exec(
            client.nc, agent.name, ExecRequest(namespace=ns, pod="restarted", command=["touch", "stop"])
        )
        assert reply.exit_code == 0
        await wait_for(store, Pod, ns, "restarted", lambda p: ready(p) and restarts(p) == 1)
        for name in ("web", "fixed"):
            await wait_for(store, Pod, ns, name, lambda p: running(p) and ready(p))
        before = {name: await client.get(Pod, name, ns) for name in ("web", "fixed", "restarted")}
        assert before["fixed"].status.host_ports[0].host_port == fixed_port

        async with recording(store, ns) as written:
            killed_at = datetime.now(UTC)
            agent.kill()
            # Created while the agent is away: started by the new agent once it has adopted the
            # others, so its running is the sign that the adopted pods were dealt with.
            await client.create(pod("marker", ns, agent.name, container("sleep 600")))
            agent.start()
            await wait_for(store, Pod, ns, "marker", running)

        for name, old in before.items():
            new = await client.get(Pod, name, ns)
            assert new.status.phase == "Running", (name, new.status)
            assert new.status.host_ports == old.status.host_ports, name
            assert new.status.container_statuses == old.status.container_statuses, name
            assert new.status.conditions == old.status.conditions, name
        # Nothing was rewritten: no moment not Ready, no restart, not even a new startedAt.
        assert [v.status for v in written if v.metadata.name != "marker"] == []
        assert await warnings_since(client, ns, killed_at) == []
        for name in ("web", "fixed"):
            new = await client.get(Pod, name, ns)
            port = new.status.host_ports[0].host_port
            assert await http_body(agent.address, port) == name  # the same process serves
        previous = LogsRequest(namespace=ns, pod="restarted", previous=True)
        assert b"".join([c async for c in read_logs(client.nc, agent.name, previous)]) == b"attempt\n"
    finally:
        await delete_all(client, store, ns, names)


async def http_body(host: str, port: int) -> str:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return data.decode().partition("\r\n\r\n")[2].strip()


@pytest.mark.parametrize("runtime", RUNTIMES, indirect=True)
async def test_a_killed_agent_keeps_the_restart_back_off(
    runtime: str, client: Client, store: Store, ns: str, start_agent: StartAgent
) -> None:
    """A crash-looping container goes on backing off after the agent's restart: its next exit
    is not taken for a first failure (which would restart it at once)."""
    agent = await start_agent(runtime, extra=("--backoff", "0.5,1,60"))
    try:
        await client.create(pod("crashing", ns, agent.name, container("sleep 1; exit 1")))
        # Waits 0, 0.5, 1, 1...: from the third exit on, every exit is followed by a back-off.
        await wait_for(store, Pod, ns, "crashing", lambda p: restarts(p) >= 3)
        agent.kill()
        count = restarts(await client.get(Pod, "crashing", ns))  # the old agent's last word
        agent.start()
        later = await wait_for(store, Pod, ns, "crashing", lambda p: restarts(p) > count)
        assert waiting_reason(later) == "CrashLoopBackOff", later.status.container_statuses
    finally:
        await delete_all(client, store, ns, ["crashing"])


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
async def test_a_container_created_but_never_started_is_replaced(
    client: Client, store: Store, ns: str, start_agent: StartAgent
) -> None:
    """The agent died between creating a container and starting it: the new agent removes it
    and starts the pod's first attempt, with no restart counted."""
    agent = await start_agent("docker")
    agent.kill()
    created = await client.create(pod("late", ns, agent.name, container("sleep 600")))
    engine = DockerRuntime()
    try:
        spec = ContainerSpec(
            node=agent.name,
            pod_uid=created.metadata.uid,
            pod_namespace=ns,
            pod_name="late",
            name="main",
            image="busybox:local",
            command=["sleep", "600"],
        )
        stale = await engine._docker.containers.create(container_config(spec), name=container_name(spec))
        agent.start()
        started = await wait_for(store, Pod, ns, "late", running)
        assert restarts(started) == 0
        assert started.status.container_statuses[0].container_id != f"docker://{stale.id}"
        with pytest.raises(ContainerNotFound):
            await engine.inspect(stale.id)
    finally:
        await engine.close()
