"""The node agent against a real Docker engine: pods run, restart, are probed, stop gracefully,
survive the agent's death, and can be inspected with `steer logs` and `steer exec`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import textwrap
from collections.abc import AsyncIterator

import pytest

from bus.client import Client
from bus.codec import load_documents
from bus.meta import is_true
from bus.resources import Pod
from bus.store import Store
from bus.validation import decode_object
from tests.cli.conftest import steer_command
from tests.nodeagent.conftest import IMAGE, StartAgent
from tests.waiting import wait_for, wait_gone

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

HTTPD = (
    "mkdir -p /www && echo hello $POD_NAME > /www/index.html && touch /www/healthz /www/ready"
    " && exec httpd -f -p $PORT -h /www"
)


def pod(name: str, namespace: str, node: str, body: str) -> Pod:
    text = f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
    text += f"spec:\n  nodeName: {node}\n"
    text += textwrap.indent(textwrap.dedent(body), "  ")
    obj = decode_object(load_documents(text)[0])
    assert isinstance(obj, Pod)
    return obj


def container(command: str, extra: str = "") -> str:
    return (
        f"containers:\n- name: main\n  image: {IMAGE}\n  command: [sh, -c, {command!r}]\n"
        + textwrap.indent(textwrap.dedent(extra), "  ")
    )


def running(p: Pod) -> bool:
    return p.status.phase == "Running" and all(s.state.running for s in p.status.container_statuses)


def ready(p: Pod) -> bool:
    return is_true(p.status.conditions)


def not_ready(p: Pod) -> bool:
    return any(c.type == "Ready" and c.status == "False" for c in p.status.conditions) and running(p)


def restarts(p: Pod) -> int:
    return sum(s.restart_count for s in p.status.container_statuses)


def host_port(p: Pod, name: str = "http") -> int:
    return next(m.host_port for m in p.status.host_ports if m.name == name)


async def http_get(host: str, port: int, path: str = "/") -> tuple[int, str]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_a_pod_runs_and_serves(client: Client, store: Store, ns: str, start_agent: StartAgent) -> None:
    agent = await start_agent()
    ports = (
        "ports: [{name: http, containerPort: 8080}]\n"
        "readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}\n"
    )
    await client.create(pod("web", ns, agent.name, container(HTTPD, ports)))
    up = await wait_for(store, Pod, ns, "web", lambda p: running(p) and ready(p))
    assert up.status.host_ip == agent.address and up.status.container_statuses[0].container_id.startswith(
        "docker://"
    )
    assert await http_get(agent.address, host_port(up)) == (200, "hello web\n")


async def test_crash_loop_back_off_grows(
    client: Client, store: Store, ns: str, start_agent: StartAgent
) -> None:
    agent = await start_agent()
    await client.create(pod("crash", ns, agent.name, container("echo dying; exit 3")))
    delays: list[str] = []

    def backoff_seen(p: Pod) -> bool:
        waiting = p.status.container_statuses[0].state.waiting if p.status.container_statuses else None
        if waiting and waiting.reason == "CrashLoopBackOff":
            delay = waiting.message.split()[1]
            if not delays or delays[-1] != delay:
                delays.append(delay)
        return len(delays) >= 3

    crashed = await wait_for(store, Pod, ns, "crash", backoff_seen)
    assert delays[:3] == ["500ms", "1s", "2s"]
    last = crashed.status.container_statuses[0].last_state.terminated
    assert last is not None and last.exit_code == 3 and last.reason == "Error"
    assert restarts(crashed) >= 3


async def test_liveness_failure_restarts_the_container(
    client: Client, store: Store, ns: str, start_agent: StartAgent
) -> None:
    agent = await start_agent()
    probe = (
        "ports: [{name: http, containerPort: 8080}]\n"
        "livenessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1, failureThreshold: 2}\n"
    )
    await client.create(pod("live", ns, agent.name, container(HTTPD, probe)))
    await wait_for(store, Pod, ns, "live", running)
    await steer_exec(client, ns, "live", "rm", "/www/healthz")
    restarted = await wait_for(store, Pod, ns, "live", lambda p: restarts(p) >= 1 and running(p))
    last = restarted.status.container_statuses[0].last_state.terminated
    assert last is not None and last.exit_code in (137, 143)


async def test_readiness_flips_ready_both_ways(
    client: Client, store: Store, ns: str, start_agent: StartAgent
) -> None:
    agent = await start_agent()
    probe = (
        "ports: [{name: http, containerPort: 8080}]\n"
        "readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 1}\n"
    )
    await client.create(pod("ready", ns, agent.name, container(HTTPD, probe)))
    await wait_for(store, Pod, ns, "ready", ready)
    await steer_exec(client, ns, "ready", "rm", "/www/ready")
    unready = await wait_for(store, Pod, ns, "ready", not_ready)
    assert restarts(unready) == 0
    await steer_exec(client, ns, "ready", "touch", "/www/ready")
    await wait_for(store, Pod, ns, "ready", ready)


async def test_graceful_termination_sends_term_then_kills(
    client: Client, store: Store, ns: str, start_agent: StartAgent
) -> None:
    agent = await start_agent(extra=("--container-gc-delay", "0"))  # containers removed at once
    told = asyncio.Event()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        told.set()
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    trap = f"trap 'echo bye | nc 127.0.0.1 {port}; exit 0' TERM; while true; do sleep 0.2; done"
    await client.create(pod("polite", ns, agent.name, container(trap)))
    await client.create(
        pod("stubborn", ns, agent.name, container("trap '' TERM; while true; do sleep 0.2; done"))
    )
    await wait_for(store, Pod, ns, "polite", running)
    await wait_for(store, Pod, ns, "stubborn", running)
    await client.delete(Pod, "polite", ns, grace_period_seconds=30)
    await client.delete(Pod, "stubborn", ns, grace_period_seconds=2)
    async with asyncio.timeout(20):
        await told.wait()  # the TERM reached the shell, which ran its trap
    await wait_gone(store, Pod, ns, "polite")
    await wait_gone(store, Pod, ns, "stubborn")  # killed once its 2 s were up
    server.close()
    assert docker_containers(agent.name) == []


async def test_a_finished_pods_containers_are_kept_then_removed_when_the_agent_stops(
    client: Client, store: Store, ns: str, start_agent: StartAgent
) -> None:
    agent = await start_agent(extra=("--container-gc-delay", "600"))
    # With a grace period the agent deletes the pod for good once its containers have stopped
    # and are handed to the reaper: the pod being gone says they are.
    await client.create(pod("short", ns, agent.name, container("sleep 600")))
    first = await wait_for(store, Pod, ns, "short", running)
    await client.delete(Pod, "short", ns, grace_period_seconds=1)  # the agent finishes it
    await wait_gone(store, Pod, ns, "short")
    kept = docker_containers(agent.name)
    assert kept == [first.status.container_statuses[0].container_id.removeprefix("docker://")]
    # A pod made again under the same name is clear of the container kept for its predecessor.
    await client.create(pod("short", ns, agent.name, container("sleep 600")))
    second = await wait_for(store, Pod, ns, "short", running)
    assert second.metadata.uid != first.metadata.uid
    await client.delete(Pod, "short", ns, grace_period_seconds=1)  # the agent finishes it
    await wait_gone(store, Pod, ns, "short")
    assert len(docker_containers(agent.name)) == 2
    agent.stop()  # SIGTERM: the agent removes what it kept before it exits
    assert docker_containers(agent.name) == []


async def test_adoption_after_the_agent_is_killed(
    client: Client, store: Store, ns: str, start_agent: StartAgent
) -> None:
    agent = await start_agent()
    await client.create(pod("kept", ns, agent.name, container("while true; do sleep 1; done")))
    await client.create(pod("orphan", ns, agent.name, container("while true; do sleep 1; done")))
    before = await wait_for(store, Pod, ns, "kept", running)
    await wait_for(store, Pod, ns, "orphan", running)
    agent.kill()
    await client.delete(Pod, "orphan", ns, grace_period_seconds=0)  # gone while the agent is away
    assert len(docker_containers(agent.name)) == 2
    async with docker_events(agent.name, "destroy") as destroyed:
        agent.start()
        async with asyncio.timeout(60):
            assert (await destroyed.readline()).strip()  # the orphan's container, removed by the new agent
    after = await client.get(Pod, "kept", ns)
    assert after.status.container_statuses[0].container_id == before.status.container_statuses[0].container_id
    assert restarts(after) == 0 and running(after)
    assert docker_containers(agent.name) == [
        before.status.container_statuses[0].container_id.removeprefix("docker://")
    ]


async def test_logs_follow_and_exec_through_the_cli(
    client: Client, store: Store, ns: str, start_agent: StartAgent, nats_url: str
) -> None:
    agent = await start_agent()
    await client.create(
        pod(
            "talker",
            ns,
            agent.name,
            container("i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done"),
        )
    )
    await wait_for(store, Pod, ns, "talker", running)
    env = {**os.environ, "STEER_NATS": nats_url, "PYTHONUNBUFFERED": "1"}
    follow = await asyncio.create_subprocess_exec(
        *steer_command(), "logs", "talker", "-n", ns, "-f", stdout=asyncio.subprocess.PIPE, env=env
    )
    assert follow.stdout is not None
    lines = [(await follow.stdout.readline()).decode() for _ in range(8)]
    follow.terminate()
    await follow.wait()
    assert lines[0] == "line 0\n" and lines[7] == "line 7\n"
    code, out = await run_steer(env, "exec", "talker", "-n", ns, "--", "sh", "-c", "echo $POD_NAME; exit 5")
    assert (code, out) == (5, "talker\n")
    code, out = await run_steer(env, "logs", "talker", "-n", ns, "--tail", "2")
    assert code == 0 and len(out.splitlines()) == 2 and out.startswith("line ")


async def run_steer(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *steer_command(), *args, stdout=asyncio.subprocess.PIPE, env=env
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def steer_exec(client: Client, namespace: str, name: str, *command: str) -> None:
    """Run a command in the pod's container through the node agent (as `steer exec` does)."""
    from bus.streams import ExecRequest, run_exec

    target = await client.get(Pod, name, namespace)
    request = ExecRequest(namespace=namespace, pod=name, command=list(command))
    reply = await run_exec(client.nc, target.spec.node_name, request)
    assert reply.exit_code == 0, reply.output


@contextlib.asynccontextmanager
async def docker_events(node: str, event: str) -> AsyncIterator[asyncio.StreamReader]:
    """Docker's own event stream for one node's containers (how we wait for the engine)."""
    proc = await asyncio.create_subprocess_exec(
        "docker",
        "events",
        "--filter",
        f"label=steersman.io/node={node}",
        "--filter",
        f"event={event}",
        "--format",
        "{{.ID}}",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        yield proc.stdout
    finally:
        proc.kill()
        await proc.wait()


def docker_containers(node: str) -> list[str]:
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc", "--filter", f"label=steersman.io/node={node}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


async def test_logs_of_many_pods_with_prefix_and_previous(
    client: Client, store: Store, ns: str, start_agent: StartAgent, nats_url: str
) -> None:
    agent = await start_agent()
    for name in ("a", "b"):
        body = container(f"echo hello from {name}; sleep 600")
        obj = pod(name, ns, agent.name, body)
        obj.metadata.labels = {"app": "many"}
        await client.create(obj)
    await client.create(pod("crash", ns, agent.name, container("echo run $(date +%s%N); exit 1")))
    for name in ("a", "b"):
        await wait_for(store, Pod, ns, name, running)
    await wait_for(store, Pod, ns, "crash", lambda p: restarts(p) >= 1)
    env = {**os.environ, "STEER_NATS": nats_url}
    code, out = await run_steer(env, "logs", "-l", "app=many", "-n", ns, "--prefix")
    assert code == 0
    assert sorted(out.splitlines()) == ["[pod/a/main] hello from a", "[pod/b/main] hello from b"]
    code, previous = await run_steer(env, "logs", "crash", "-n", ns, "--previous")
    assert code == 0 and previous.startswith("run ")
