"""What goes wrong in a pod becomes a clear status reason and event, and the agent keeps
running every other pod (Docker engine)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from bus import subjects
from bus.client import Client
from bus.events import read
from bus.resources import Pod
from bus.store import Store
from tests.nodeagent.conftest import MISSING_IMAGE, StartAgent
from tests.nodeagent.test_agent_docker import HTTPD, container, pod, ready, restarts, running
from tests.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]


def waiting_reason(p: Pod) -> str:
    statuses = p.status.container_statuses
    return statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else ""


async def reasons_of(client: Client, namespace: str, name: str) -> set[str]:
    js = client.nc.jetstream()
    return {e.reason async for e in read(js, subject_filter=subjects.events_filter(namespace, "Pod", name))}


async def wait_for_events(client: Client, namespace: str, name: str, reasons: set[str]) -> None:
    """Follow the pod's events until every reason in `reasons` has been seen."""
    js = client.nc.jetstream()
    missing = set(reasons)
    async with asyncio.timeout(30):
        async for event in read(
            js, subject_filter=subjects.events_filter(namespace, "Pod", name), follow=True
        ):
            missing.discard(event.reason)
            if not missing:
                return


async def test_everything_that_can_go_wrong_at_once(
    client: Client, store: Store, ns: str, start_agent: StartAgent
) -> None:
    agent = await start_agent()
    taken = socket.socket()
    taken.bind((agent.address, 0))
    taken.listen()
    busy_port = taken.getsockname()[1]
    healthy = "ports: [{name: http, containerPort: 8080}]\n"
    await client.create(pod("healthy", ns, agent.name, container(HTTPD, healthy)))
    missing = container("true").replace("image: busybox:local", f"image: '{MISSING_IMAGE}'")
    await client.create(pod("no-image", ns, agent.name, missing))
    no_command = "containers:\n- name: main\n  image: busybox:local\n  command: [/no/such/binary]\n"
    await client.create(pod("no-command", ns, agent.name, no_command))
    closed = "readinessProbe: {tcpSocket: {port: 1}, periodSeconds: 1}\n"
    await client.create(pod("closed-probe", ns, agent.name, container("sleep 600", closed)))
    await client.create(pod("exits", ns, agent.name, container("exit 0")))
    fixed = f"ports: [{{containerPort: 8080, hostPort: {busy_port}}}]\n"
    await client.create(pod("port-taken", ns, agent.name, container("sleep 600", fixed)))

    pulled = await wait_for(store, Pod, ns, "no-image", lambda p: waiting_reason(p) == "ErrImagePull")
    assert "missing" in pulled.status.container_statuses[0].state.waiting.message  # type: ignore[union-attr]
    await wait_for(store, Pod, ns, "no-image", lambda p: waiting_reason(p) == "ImagePullBackOff")

    crashed = await wait_for(store, Pod, ns, "no-command", lambda p: waiting_reason(p) == "CrashLoopBackOff")
    last = crashed.status.container_statuses[0].last_state.terminated
    assert last is not None and last.reason == "StartError" and last.exit_code == 128

    unready = await wait_for(store, Pod, ns, "closed-probe", lambda p: running(p) and restarts(p) == 0)
    assert not ready(unready)

    await wait_for(
        store, Pod, ns, "exits", lambda p: waiting_reason(p) == "CrashLoopBackOff" and restarts(p) >= 1
    )

    failed = await wait_for(store, Pod, ns, "port-taken", lambda p: p.status.phase == "Failed")
    assert failed.status.reason == "HostPortConflict" and str(busy_port) in failed.status.message

    await wait_for(store, Pod, ns, "healthy", running)  # the agent keeps running the good one
    await wait_for_events(client, ns, "no-image", {"Failed", "BackOff"})
    await wait_for_events(client, ns, "closed-probe", {"Unhealthy"})
    assert "FailedHostPort" in await reasons_of(client, ns, "port-taken")
    taken.close()


@pytest.mark.parametrize(
    "policy,command,phase,restarted",
    [
        ("OnFailure", "exit 0", "Succeeded", False),
        ("Never", "exit 2", "Failed", False),
        ("OnFailure", "exit 2", "Running", True),
    ],
)
async def test_restart_policies(
    client: Client,
    store: Store,
    ns: str,
    start_agent: StartAgent,
    policy: str,
    command: str,
    phase: str,
    restarted: bool,
) -> None:
    agent = await start_agent()
    body = f"restartPolicy: {policy}\n" + container(command)
    await client.create(pod("job", ns, agent.name, body))
    if restarted:
        done = await wait_for(store, Pod, ns, "job", lambda p: restarts(p) >= 1)
        assert done.status.phase == phase
    else:
        done = await wait_for(store, Pod, ns, "job", lambda p: p.status.phase == phase)
        assert restarts(done) == 0
        terminated = done.status.container_statuses[0].state.terminated
        assert terminated is not None, done.status
        assert terminated.reason == ("Completed" if phase == "Succeeded" else "Error"), terminated.message
