"""The scheduler against its own control plane (so that no other test's nodes or pods count):
hollow node agents on the fake runtime, since placement, not containers, is under test."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bus import subjects
from bus.client import Client
from bus.connection import connect
from bus.events import read
from bus.meta import ObjectMeta, OwnerReference
from bus.protocol import SYSTEM_NAMESPACE
from bus.resources import Lease, Namespace, Node, Pod
from bus.resources.pod import Container, PodSpec, ResourceRequirements
from bus.store import Store
from tests.agents import AgentProcess, node_ready
from tests.conftest import own_cluster, start_service
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server and an API of our own; yields its URL."""
    with own_cluster(tmp_path_factory.mktemp("sched")) as url:
        yield url


@pytest.fixture
async def env(cluster: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    nc = await connect(cluster, name="test")
    client, store = Client(nc), Store(nc.jetstream())
    ns = f"s-{uuid.uuid4().hex[:8]}"
    await client.create(Namespace(metadata=ObjectMeta(name=ns)))
    procs: list[Any] = []
    yield {"url": cluster, "client": client, "store": store, "ns": ns, "procs": procs, "tmp": tmp_path}
    for proc in procs:
        if isinstance(proc, AgentProcess):
            proc.stop()
        else:
            proc.terminate()
            proc.wait(20)
    for node in await client.list(Node, ""):
        await client.delete(Node, node.metadata.name, "")
    for pod in await client.list(Pod, "*"):
        await client.delete(Pod, pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
    await nc.close()


async def add_node(
    env: dict[str, Any], name: str, *, cpu: str = "2", labels: str = "", taints: str = ""
) -> None:
    args = ["--name", name, "--runtime", "fake", "--nats", env["url"], "--capacity", f"cpu={cpu},memory=4Gi"]
    args += ["--labels", labels, "--taints", taints, "--data-dir", str(env["tmp"])]
    agent = AgentProcess(name, "127.0.0.1", args, env["tmp"] / f"{name}.log")
    agent.start()
    env["procs"].append(agent)
    await wait_for(env["store"], Node, "", name, node_ready)


def start_scheduler(env: dict[str, Any], *args: str) -> subprocess.Popen[bytes]:
    proc = start_service(
        "services.scheduler", "--nats", env["url"], *args, log=env["tmp"] / f"sched-{len(env['procs'])}.log"
    )
    env["procs"].append(proc)
    return proc


def pod(name: str, ns: str, cpu: str = "", *, owner: str = "", selector: dict[str, str] | None = None) -> Pod:
    requests = {"cpu": cpu} if cpu else {}
    refs = [OwnerReference(api_version="apps/v1", kind="ReplicaSet", name="rs", uid=owner, controller=True)]
    return Pod(
        metadata=ObjectMeta(name=name, namespace=ns, owner_references=refs if owner else []),
        spec=PodSpec(
            containers=[Container(name="c", image="x", resources=ResourceRequirements(requests=requests))],
            node_selector=selector or {},
        ),
    )


def unschedulable(p: Pod) -> str:
    for condition in p.status.conditions:
        if (
            condition.type == "PodScheduled"
            and condition.status == "False"
            and condition.reason == "Unschedulable"
        ):
            return condition.message
    return ""


def bound(p: Pod) -> bool:
    return bool(p.spec.node_name)


async def test_pods_spread_over_nodes_and_run(env: dict[str, Any]) -> None:
    for name in ("a", "b", "c"):
        await add_node(env, f"spread-{name}")
    start_scheduler(env)
    client, ns = env["client"], env["ns"]
    for i in range(6):
        await client.create(pod(f"p{i}", ns, "200m", owner="rs-uid-1"))
    placed = [
        await wait_for(env["store"], Pod, ns, f"p{i}", lambda p: p.status.phase == "Running")
        for i in range(6)
    ]
    per_node: dict[str, int] = {}
    for p in placed:
        per_node[p.spec.node_name] = per_node.get(p.spec.node_name, 0) + 1
    assert sorted(per_node.values()) == [2, 2, 2]


async def test_unschedulable_says_why_and_is_retried_when_the_cluster_changes(env: dict[str, Any]) -> None:
    await add_node(env, "why-a", cpu="1")
    await add_node(env, "why-b", cpu="1")
    await add_node(env, "why-c", cpu="4", taints="dedicated=gpu:NoSchedule")
    start_scheduler(env)
    client, store, ns = env["client"], env["store"], env["ns"]
    await client.create(pod("big", ns, "2"))
    pending = await wait_for(store, Pod, ns, "big", lambda p: bool(unschedulable(p)))
    assert unschedulable(pending) == (
        "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}."
    )
    js = client.nc.jetstream()
    filter_ = subjects.events_filter(ns, "Pod", "big")
    async with asyncio.timeout(10):
        async for event in read(js, subject_filter=filter_, follow=True):
            if event.reason == "FailedScheduling":
                assert event.type == "Warning" and "Insufficient cpu" in event.message
                break
    await add_node(env, "why-d", cpu="4")  # a node that fits: the pod is tried again, no polling
    placed = await wait_for(store, Pod, ns, "big", bound)
    assert placed.spec.node_name == "why-d"


async def test_cordon_and_uncordon(env: dict[str, Any]) -> None:
    await add_node(env, "cord-a")
    start_scheduler(env)
    client, store, ns = env["client"], env["store"], env["ns"]
    await client.patch(Node, "cord-a", {"spec": {"unschedulable": True}}, "")
    await client.create(pod("waits", ns))
    pending = await wait_for(store, Pod, ns, "waits", lambda p: bool(unschedulable(p)))
    assert unschedulable(pending) == "0/1 nodes are available: 1 node(s) were unschedulable."
    await client.patch(Node, "cord-a", {"spec": {"unschedulable": None}}, "")
    assert (await wait_for(store, Pod, ns, "waits", bound)).spec.node_name == "cord-a"


async def test_a_pod_going_away_frees_room(env: dict[str, Any]) -> None:
    await add_node(env, "room-a", cpu="1")
    start_scheduler(env)
    client, store, ns = env["client"], env["store"], env["ns"]
    await client.create(pod("first", ns, "800m"))
    await wait_for(store, Pod, ns, "first", bound)
    await client.create(pod("second", ns, "800m"))
    await wait_for(store, Pod, ns, "second", lambda p: bool(unschedulable(p)))
    await client.delete(Pod, "first", ns, grace_period_seconds=0)
    assert (await wait_for(store, Pod, ns, "second", bound)).spec.node_name == "room-a"


async def test_a_selector_matching_no_node(env: dict[str, Any]) -> None:
    await add_node(env, "sel-a", labels="disk=hdd")
    start_scheduler(env)
    await env["client"].create(pod("ssd", env["ns"], selector={"disk": "ssd"}))
    pending = await wait_for(env["store"], Pod, env["ns"], "ssd", lambda p: bool(unschedulable(p)))
    assert (
        unschedulable(pending)
        == "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    )


async def scheduled_events(client: Client, ns: str, count: int) -> dict[str, int]:
    """Scheduled events per pod of `ns`, once `count` of them have been recorded (a scheduler
    records each after its bind), read from the events stream."""
    seen: dict[str, int] = {}
    stream = read(client.nc.jetstream(), subject_filter=subjects.events_filter(ns, "Pod"), follow=True)
    async with asyncio.timeout(60), contextlib.aclosing(stream) as events:
        async for event in events:
            if event.reason == "Scheduled":
                seen[event.involved_object.name] = seen.get(event.involved_object.name, 0) + 1
                if sum(seen.values()) >= count:
                    return seen
    raise AssertionError("the events stream ended")


async def test_one_of_two_schedulers_leads_and_the_other_takes_over(env: dict[str, Any]) -> None:
    for name in ("a", "b"):
        await add_node(env, f"two-{name}", cpu="8")
    schedulers = {name: start_scheduler(env, "--instance", name, "--lease", "3,1") for name in ("a", "b")}
    client, store, ns = env["client"], env["store"], env["ns"]
    await asyncio.gather(*(client.create(pod(f"p{i}", ns, "100m")) for i in range(30)))
    for i in range(30):
        await wait_for(store, Pod, ns, f"p{i}", bound)
    lease = await client.get(Lease, "scheduler", SYSTEM_NAMESPACE)
    leader = lease.spec.holder_identity
    assert leader in schedulers
    schedulers[leader].kill()  # no release: the standby must wait the lease out, then lead
    await asyncio.gather(*(client.create(pod(f"q{i}", ns, "100m")) for i in range(10)))
    for i in range(10):
        await wait_for(store, Pod, ns, f"q{i}", bound)
    lease = await client.get(Lease, "scheduler", SYSTEM_NAMESPACE)
    assert lease.spec.holder_identity not in ("", leader)
    # Every pod was bound by one scheduler, once.
    scheduled = await scheduled_events(client, ns, 40)
    assert scheduled == {**{f"p{i}": 1 for i in range(30)}, **{f"q{i}": 1 for i in range(10)}}
