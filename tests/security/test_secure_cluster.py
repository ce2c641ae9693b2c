"""The allowed paths still work under credentials: the scheduler, the controllers and a node agent
each run with their own, a user confined to a namespace deploys there, the pod is scheduled and
Running on the process runtime, and the user reads its logs and execs in it. Then a revoked
credential stops working, on the server's reload, for a connection already made and a new one."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bus import natsserver
from bus.connection import ConnectionClosed, connect, fail_when_closed
from bus.credentials import CredentialsError
from bus.meta import LabelSelector, ObjectMeta
from bus.resources import Deployment, Node, Pod
from bus.resources.apps import DeploymentSpec
from bus.resources.pod import Container, PodSpec, PodTemplateSpec
from bus.streams import ExecRequest, LogsRequest, read_logs, run_exec
from cli import registry
from tests.agents import AgentProcess, clean_up, node_ready
from tests.conftest import REPO
from tests.securecluster import SecureCluster
from tests.waiting import wait_for

GREETER = ["sh", "-c", "echo hello from $HOSTNAME; exec sleep 3600"]


@pytest.fixture(scope="module")
def agent(secure: SecureCluster) -> Iterator[AgentProcess]:
    secure.start_service("services.scheduler", "scheduler")
    secure.start_service("services.controllers", "controllers", "--lease", "4,1")
    args = ["--name", "node-1", "--address", "127.0.0.1", "--runtime", "process", "--nats", secure.url]
    args += ["--creds", str(secure.credentials / "node-1.nk"), "--data-dir", str(secure.tmp / "nodes")]
    args += ["--resync", "5", "--ports", "31000-31099"]
    agent = AgentProcess("node-1", "127.0.0.1", args, secure.tmp / "agent-node-1.log")
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()
        clean_up(agent)


def deployment(name: str, namespace: str) -> Deployment:
    labels = {"app": name}
    return Deployment(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=DeploymentSpec(
            replicas=1,
            selector=LabelSelector(match_labels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels),
                spec=PodSpec(containers=[Container(name="main", image="busybox:local", command=GREETER)]),
            ),
        ),
    )


async def test_a_deployment_runs_with_every_part_under_its_own_credential(
    secure: SecureCluster, agent: AgentProcess
) -> None:
    async with secure.connect_as("admin") as (_, admin_store):
        await wait_for(admin_store, Node, "", "node-1", node_ready)
    async with secure.connect_as("alice") as (client, store):
        await client.create(deployment("greeter", "mine"))
        running = None
        async with asyncio.timeout(90), contextlib.aclosing(store.watch(Pod, "mine")) as events:
            async for event in events:
                pod = event.object
                if pod is not None and pod.metadata.labels.get("app") == "greeter":
                    if pod.status.phase == "Running" and pod.spec.node_name == "node-1":
                        running = pod
                        break
        assert running is not None
        name = running.metadata.name
        logs = LogsRequest(namespace="mine", pod=name, follow=True)
        async with asyncio.timeout(30):
            async for chunk in read_logs(client.nc, "node-1", logs):
                assert chunk.startswith(b"hello from")
                break  # following: the stream stays open until we cancel
        result = await run_exec(
            client.nc, "node-1", ExecRequest(namespace="mine", pod=name, command=["echo", "hi"])
        )
        assert (result.exit_code, result.output) == (0, b"hi\n")
        await client.delete(Deployment, "greeter", "mine")


def test_a_node_agent_cannot_register_under_another_nodes_name(secure: SecureCluster) -> None:
    args = ["--name", "node-2", "--nats", secure.url, "--creds", str(secure.credentials / "node-1.nk")]
    done = subprocess.run(
        [sys.executable, "-m", "nodeagent", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert 'is the credential of node "node-1": it cannot register node "node-2"' in done.stderr


def test_a_service_with_a_revoked_credential_exits_with_one_clear_line(secure: SecureCluster) -> None:
    reg = registry.load(secure.credentials)
    reg.add("spare-scheduler", "scheduler")
    reg.save()
    path = secure.credentials / "spare-scheduler.nk"
    kept = path.read_text()
    reg.revoke("spare-scheduler")
    reg.save()
    natsserver.reload(secure.server.process)
    path.write_text(kept)
    path.chmod(0o600)
    done = subprocess.run(
        [sys.executable, "-m", "services.scheduler", "--nats", secure.url, "--creds", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"refused the credentials in {path}" in done.stderr


async def test_revoking_closes_a_live_connection_for_good(
    secure: SecureCluster, caplog: pytest.LogCaptureFixture
) -> None:
    reg = registry.load(secure.credentials)
    reg.add("temp", "view")
    reg.save()
    natsserver.reload(secure.server.process)
    creds = secure.creds("temp")
    kept = (secure.credentials / "temp.nk").read_text()
    nc = None
    async with asyncio.timeout(10):
        while nc is None:  # the reload takes a moment
            try:
                nc = await connect(secure.url, name="temp", credentials=creds)
            except CredentialsError:
                await asyncio.sleep(0.1)
    try:
        reg.revoke("temp")
        reg.save()
        natsserver.reload(secure.server.process)
        async with asyncio.timeout(10):
            with pytest.raises(ConnectionClosed, match="refused the credentials"):
                await fail_when_closed(nc)
    finally:
        await nc.close()
    # No storm of attempts: the reconnect that met the refusal, and one more round at most.
    refusals = [r for r in caplog.records if "refused the credentials" in r.getMessage()]
    assert 1 <= len(refusals) <= 3
    (secure.credentials / "temp.nk").write_text(kept)
    (secure.credentials / "temp.nk").chmod(0o600)
    with pytest.raises(CredentialsError, match="wrong, or revoked"):
        await connect(secure.url, name="temp", credentials=creds)
