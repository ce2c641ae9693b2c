"""Deployments on a whole cluster of real processes: nats-server, API, scheduler, controllers and
three node agents running real Docker containers (busybox httpd with a readiness probe).

The tests share one cluster and run in order; each uses its own namespace. Timings are short
(node grace, tolerations, probe periods) so that failures show within seconds, but every wait
is for a condition seen through a watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from bus.client import Client
from bus.meta import LabelSelector, ObjectMeta, is_true
from bus.resources import Deployment, Node, Pod
from bus.resources.apps import DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment
from bus.resources.pod import (
    Container,
    ContainerPort,
    EnvVar,
    HTTPGetAction,
    PodSpec,
    PodTemplateSpec,
    Probe,
)
from bus.store import Store
from bus.workloads import REVISION
from tests.agents import REPO, AgentProcess, node_ready
from tests.cluster import ControlPlane
from tests.nodeagent.conftest import IMAGE, MISSING_IMAGE
from tests.waiting import wait_for, wait_for_all, wait_gone

pytestmark = pytest.mark.usefixtures("docker_engine")

NODES = 3
HTTPD = "mkdir -p www && echo $POD_NAME > www/index.html && exec httpd -f -p $HOST_IP:$PORT -h www"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[ControlPlane]:
    with ControlPlane.running(tmp_path_factory.mktemp("workloads")) as plane:
        plane.start_scheduler()
        plane.start_controllers("--node-grace", "4", "--default-toleration-seconds", "2")
        for _ in range(NODES):
            plane.start_agent("docker", "--lease", "4,1")
        yield plane


@pytest.fixture
async def cluster(plane: ControlPlane) -> AsyncIterator[tuple[Client, Store, str]]:
    async with plane.connect() as (client, store):
        for agent in plane.agents:
            await wait_for(store, Node, "", agent.name, node_ready)
        yield client, store, await plane.namespace(client)


def httpd(ns: str, name: str, replicas: int, *, image: str = IMAGE, **spec: Any) -> Deployment:
    labels = {"app": name}
    container = Container(
        name="httpd",
        image=image,
        command=["sh", "-c", HTTPD],
        ports=[ContainerPort(name="http", container_port=8080)],
        readiness_probe=Probe(http_get=HTTPGetAction(path="/", port="http"), period_seconds=1),
    )
    return Deployment(
        metadata=ObjectMeta(name=name, namespace=ns),
        spec=DeploymentSpec(
            replicas=replicas,
            selector=LabelSelector(match_labels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels), spec=PodSpec(containers=[container])
            ),
            **spec,
        ),
    )


def rolled_out(generation: int = 1) -> Any:
    def check(d: Deployment) -> bool:
        progressing = next((c for c in d.status.conditions if c.type == "Progressing"), None)
        return (
            d.metadata.generation >= generation
            and d.status.observed_generation == d.metadata.generation
            and progressing is not None
            and progressing.reason == "NewReplicaSetAvailable"
        )

    return check


def serving(pod: Pod) -> bool:
    running = pod.status.phase == "Running" and is_true(pod.status.conditions)
    return running and pod.metadata.deletion_timestamp is None


async def running_pods(client: Client, ns: str) -> list[Pod]:
    return [p for p in await client.list(Pod, ns) if serving(p)]


def steer(plane: ControlPlane, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STEER_NATS": plane.url}
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=REPO,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


async def docker(*args: str) -> list[str]:
    """Run a docker command; the words it printed."""
    done = await asyncio.to_thread(
        subprocess.run, ["docker", *args], capture_output=True, text=True, check=True
    )
    return done.stdout.split()


async def containers_of(pod: Pod) -> list[str]:
    return await docker("ps", "-q", "--filter", f"label=steersman.io/pod-uid={pod.metadata.uid}")


async def test_ten_replicas_spread_over_the_nodes_and_serve_their_names(
    plane: ControlPlane, cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = cluster
    await client.create(httpd(ns, "web", 10))
    await wait_for(store, Deployment, ns, "web", rolled_out(), within=120)
    pods = await running_pods(client, ns)
    assert len(pods) == 10
    per_node = Counter(p.spec.node_name for p in pods)
    assert set(per_node) == {a.name for a in plane.agents}
    assert max(per_node.values()) - min(per_node.values()) <= 1, per_node
    pod = pods[0]
    port = pod.status.host_ports[0].host_port
    reply = await asyncio.to_thread(_fetch, pod.status.host_ip, port)
    assert reply.strip() == pod.metadata.name


def _fetch(host: str, port: int) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/", timeout=5) as response:  # noqa: S310 (loopback)
        return str(response.read().decode())


async def test_a_killed_container_is_replaced(
    plane: ControlPlane, cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = cluster
    await client.create(httpd(ns, "heal", 2))
    await wait_for(store, Deployment, ns, "heal", rolled_out(), within=120)
    victim = (await running_pods(client, ns))[0]
    [container] = await containers_of(victim)
    await docker("kill", container)
    back = await wait_for(
        store,
        Pod,
        ns,
        victim.metadata.name,
        lambda p: p.status.container_statuses[0].restart_count >= 1 and is_true(p.status.conditions),
        within=60,
    )
    assert back.status.phase == "Running"
    assert await containers_of(back) != [container]  # a new container, serving again
    final = await wait_for(store, Deployment, ns, "heal", lambda d: d.status.available_replicas == 2)
    assert final.status.replicas == 2


async def test_rolling_update_with_max_unavailable_zero_never_drops_below_the_ready_count(
    plane: ControlPlane, cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = cluster
    strategy = DeploymentStrategy(rolling_update=RollingUpdateDeployment(max_surge=1, max_unavailable=0))
    await client.create(httpd(ns, "roll", 4, strategy=strategy))
    await wait_for(store, Deployment, ns, "roll", rolled_out(), within=120)
    lowest = await _lowest_ready_during(store, ns, client, _set_env(client, ns, "roll", "v2"))
    await wait_for(store, Deployment, ns, "roll", rolled_out(2), within=120)
    assert lowest >= 4, f"ready pods fell to {lowest} during the rollout"
    pods = await running_pods(client, ns)
    assert len(pods) == 4
    assert all(p.spec.containers[0].env[0].value == "v2" for p in pods)


async def _set_env(client: Client, ns: str, name: str, value: str) -> None:
    deployment = await client.get(Deployment, name, ns)
    deployment.spec.template.spec.containers[0].env = [EnvVar(name="V", value=value)]  # type: ignore[union-attr]
    await client.update(deployment)


async def _lowest_ready_during(store: Store, ns: str, client: Client, change: Any) -> int:
    """The fewest ready pods seen, through a watch, from `change` until the rollout completes."""
    ready: dict[str, bool] = {}
    lowest: int | None = None
    synced = False
    async with asyncio.timeout(120), contextlib.aclosing(store.watch(Pod, ns)) as events:
        async for event in events:
            pod = event.object
            if event.type == "SYNCED":
                synced = True
                await change
            elif pod is not None:
                gone = event.type == "DELETED" or pod.metadata.deletion_timestamp is not None
                ready[pod.metadata.name] = not gone and is_true(pod.status.conditions)
            if synced:
                count = sum(ready.values())
                lowest = count if lowest is None else min(lowest, count)
                deployment = await client.get(Deployment, "roll", ns)
                if rolled_out(2)(deployment):
                    return lowest
    raise AssertionError("the watch ended")


async def test_a_broken_rollout_stalls_and_undo_restores_it(
    plane: ControlPlane, cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = cluster
    await client.create(httpd(ns, "app", 3, progress_deadline_seconds=8))
    await wait_for(store, Deployment, ns, "app", rolled_out(), within=120)
    good = {p.metadata.name for p in await running_pods(client, ns)}
    broken = await client.get(Deployment, "app", ns)
    broken.spec.template.spec.containers[0].image = MISSING_IMAGE  # type: ignore[union-attr]
    await client.update(broken)
    status = await asyncio.to_thread(
        steer, plane, "rollout", "status", "deploy/app", "-n", ns, "--timeout", "90s"
    )
    assert status.returncode == 1, status
    assert 'deployment "app" exceeded its progress deadline' in status.stderr
    # maxUnavailable 25% of 3 rounds down to 0: every old pod kept serving.
    assert {p.metadata.name for p in await running_pods(client, ns)} >= good
    stalled = await client.get(Deployment, "app", ns)
    assert stalled.status.available_replicas == 3
    history = await asyncio.to_thread(steer, plane, "rollout", "history", "deployment", "app", "-n", ns)
    assert history.returncode == 0 and history.stdout.split()[-4:] == ["1", "<none>", "2", "<none>"], history

    missing = await asyncio.to_thread(
        steer, plane, "rollout", "undo", "deploy/app", "--to-revision", "7", "-n", ns
    )
    assert missing.returncode == 1 and "unable to find specified revision 7 in history" in missing.stderr
    unchanged = await client.get(Deployment, "app", ns)
    assert unchanged.metadata.resource_version == stalled.metadata.resource_version

    undo = await asyncio.to_thread(steer, plane, "rollout", "undo", "deploy/app", "-n", ns)
    assert undo.returncode == 0 and "deployment.apps/app rolled back" in undo.stdout, undo
    done = await asyncio.to_thread(
        steer, plane, "rollout", "status", "deploy/app", "-n", ns, "--timeout", "90s"
    )
    assert done.returncode == 0 and 'deployment "app" successfully rolled out' in done.stdout, done
    restored = await client.get(Deployment, "app", ns)
    assert restored.spec.template.spec.containers[0].image == IMAGE  # type: ignore[union-attr]
    assert restored.metadata.annotations[REVISION] == "3"
    assert len(await running_pods(client, ns)) == 3


async def test_pods_of_a_killed_node_agent_run_elsewhere(
    plane: ControlPlane, cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = cluster
    await client.create(httpd(ns, "ha", 6))
    await wait_for(store, Deployment, ns, "ha", rolled_out(), within=120)
    victim: AgentProcess = plane.agents[0]
    stranded = {p.metadata.name for p in await running_pods(client, ns) if p.spec.node_name == victim.name}
    assert stranded, "the spread should have put pods on every node"
    victim.kill()
    await wait_for(store, Node, "", victim.name, lambda n: not node_ready(n), within=30)

    def serving_elsewhere(pods: list[Pod]) -> bool:
        live = [p for p in pods if p.metadata.deletion_timestamp is None]
        return len(live) == 6 and all(serving(p) and p.spec.node_name != victim.name for p in live)

    await wait_for_all(store, Pod, ns, serving_elsewhere, within=30)
    healed = await wait_for(store, Deployment, ns, "ha", lambda d: d.status.available_replicas == 6)
    assert healed.status.replicas == 6

    victim.start()  # the node comes back: its stale containers stop, never more pods than desired
    await wait_for(store, Node, "", victim.name, node_ready, within=60)
    for name in stranded:
        await wait_gone(store, Pod, ns, name, within=60)
    assert len(await running_pods(client, ns)) == 6
    leftover = await docker(
        "ps",
        "-q",
        "--filter",
        f"label=steersman.io/node={victim.name}",
        "--filter",
        f"label=steersman.io/pod-namespace={ns}",
    )
    assert leftover == []


async def test_rollout_restart_pause_resume_and_bad_input(
    plane: ControlPlane, cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = cluster
    await client.create(httpd(ns, "ops", 2))
    await wait_for(store, Deployment, ns, "ops", rolled_out(), within=120)
    before = {p.metadata.name for p in await running_pods(client, ns)}

    restart = await asyncio.to_thread(steer, plane, "rollout", "restart", "deploy/ops", "-n", ns)
    assert restart.returncode == 0 and "deployment.apps/ops restarted" in restart.stdout, restart
    await wait_for(store, Deployment, ns, "ops", rolled_out(2), within=120)
    after = await wait_for_all(store, Pod, ns, lambda pods: sum(1 for p in pods if serving(p)) == 2)
    assert not before & {p.metadata.name for p in after if serving(p)}  # every pod replaced

    paused = await asyncio.to_thread(steer, plane, "rollout", "pause", "deployment/ops", "-n", ns)
    assert paused.returncode == 0 and "deployment.apps/ops paused" in paused.stdout
    again = await asyncio.to_thread(steer, plane, "rollout", "pause", "deployment/ops", "-n", ns)
    assert again.returncode == 1 and 'deployments.apps "ops" is already paused' in again.stderr
    blocked = await asyncio.to_thread(steer, plane, "rollout", "undo", "deploy/ops", "-n", ns)
    assert blocked.returncode == 1 and "cannot roll back a paused deployment" in blocked.stderr
    resumed = await asyncio.to_thread(steer, plane, "rollout", "resume", "deploy/ops", "-n", ns)
    assert resumed.returncode == 0 and "deployment.apps/ops resumed" in resumed.stdout

    for args, message in [
        (("rollout", "status", "rs/ops"), "rollout is supported for deployments only, not replicasets"),
        (("rollout", "status", "deploy/nope"), 'deployments.apps "nope" not found'),
        (("rollout", "status", "deploy/ops", "--timeout", "soon"), 'invalid duration "soon"'),
        (("rollout", "history", "deploy/ops", "--revision", "9"), "unable to find the specified revision 9"),
    ]:
        result = await asyncio.to_thread(steer, plane, *args, "-n", ns)
        assert result.returncode != 0 and message in result.stderr, (args, result)
