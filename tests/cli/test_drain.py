"""`steer drain` end to end, in a control plane of its own (scheduler, controllers, two node
agents on the fake runtime): the CLI runs as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from bus.client import Client
from bus.errors import NotFound
from bus.meta import LabelSelector, ObjectMeta, is_true
from bus.resources import Namespace, Node, Pod, ReplicaSet
from bus.resources.apps import ReplicaSetSpec
from bus.resources.cluster import NodeSpec
from bus.resources.pod import Container, PodSpec, PodTemplateSpec
from bus.store import Store
from tests.agents import node_ready
from tests.cli.conftest import Result, steer_command
from tests.cluster import ControlPlane
from tests.waiting import wait_for, wait_gone

Cluster = tuple[Client, Store, str]


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane.running(tmp_path_factory.mktemp("drain")) as plane:
        plane.start_scheduler()
        plane.start_controllers()
        plane.start_agent("fake")
        plane.start_agent("fake")
        yield plane


@pytest.fixture
async def cluster(plane: ControlPlane) -> AsyncIterator[Cluster]:
    async with plane.connect() as (client, store):
        for agent in plane.agents:
            await wait_for(store, Node, "", agent.name, node_ready)
        ns = await plane.namespace(client)
        yield client, store, ns
        # Every test starts with both nodes schedulable and none of the pods of the others.
        for agent in plane.agents:
            await client.patch(Node, agent.name, {"spec": {"unschedulable": None}}, "")
        await client.delete(Namespace, ns, "")
        await wait_pods(store, ns, lambda ps: not ps, live=False)


async def steer(plane: ControlPlane, *args: str) -> Result:
    env = {**os.environ, "STEER_NATS": plane.url, "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        *steer_command(), *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    result = Result(proc.returncode or 0, out.decode(), err.decode())
    assert "Traceback" not in result.err, result.err
    return result


def sleeper(ns: str, replicas: int) -> ReplicaSet:
    labels = {"app": "sleeper"}
    spec = PodSpec(containers=[Container(name="main", image="busybox:local", command=["sleep", "3600"])])
    return ReplicaSet(
        metadata=ObjectMeta(name="sleeper", namespace=ns),
        spec=ReplicaSetSpec(
            replicas=replicas,
            selector=LabelSelector(match_labels=labels),
            template=PodTemplateSpec(metadata=ObjectMeta(labels=labels), spec=spec),
        ),
    )


def bare_pod(ns: str, name: str, node: str) -> Pod:
    container = Container(name="main", image="busybox:local", command=["sleep", "3600"])
    return Pod(
        metadata=ObjectMeta(name=name, namespace=ns), spec=PodSpec(containers=[container], node_name=node)
    )


async def wait_pods(
    store: Store, ns: str, check: Callable[[list[Pod]], bool], *, live: bool = True
) -> list[Pod]:
    """The namespace's pods once `check` holds for them: with `live`, only pods not terminating,
    and all of them ready."""
    pods: dict[str, Pod] = {}
    synced = False
    async with asyncio.timeout(60), contextlib.aclosing(store.watch(Pod, ns)) as events:
        async for event in events:
            synced = synced or event.type == "SYNCED"
            obj = event.object
            if obj is not None:
                if event.type == "DELETED" or (live and obj.metadata.deletion_timestamp is not None):
                    pods.pop(obj.metadata.name, None)
                else:
                    pods[obj.metadata.name] = obj
            ready = [p for p in pods.values() if is_true(p.status.conditions) or not live]
            if synced and len(ready) == len(pods) and check(ready):
                return ready
    raise AssertionError("the watch ended")


async def test_drain_moves_the_pods_elsewhere(plane: ControlPlane, cluster: Cluster) -> None:
    client, store, ns = cluster
    await client.create(sleeper(ns, 4))
    nodes = {a.name for a in plane.agents}
    pods = await wait_pods(store, ns, lambda ps: len(ps) == 4 and {p.spec.node_name for p in ps} == nodes)
    drained = plane.agents[0].name
    leaving = sorted(p.metadata.name for p in pods if p.spec.node_name == drained)

    result = await steer(plane, "drain", drained)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == f"node/{drained} cordoned"
    assert sorted(lines[1:-1]) == [f"pod/{name} evicted" for name in leaving]
    assert lines[-1] == f"node/{drained} drained"
    assert sorted(result.err_lines) == sorted(f"evicting pod {ns}/{name}" for name in leaving)
    assert (await client.get(Node, drained, "")).spec.unschedulable
    await wait_pods(
        store, ns, lambda ps: len(ps) == 4 and {p.spec.node_name for p in ps} == nodes - {drained}
    )


async def test_drain_refuses_pods_without_a_controller_unless_forced(
    plane: ControlPlane, cluster: Cluster
) -> None:
    client, store, ns = cluster
    node = plane.agents[1].name
    await client.create(bare_pod(ns, "alone", node))
    await wait_pods(store, ns, lambda ps: [p.metadata.name for p in ps] == ["alone"])

    refused = await steer(plane, "drain", node)
    assert refused.code == 1
    assert refused.out.strip() == f"node/{node} cordoned"
    assert refused.err_lines == [
        f'error: unable to drain node "{node}": cannot delete pods that declare no controller, '
        f"nothing would replace them (use --force to override): {ns}/alone"
    ]
    assert (await client.get(Pod, "alone", ns)).metadata.deletion_timestamp is None

    forced = await steer(plane, "drain", node, "--force", "--grace-period", "0")
    assert forced.code == 0, forced.err
    assert forced.out.splitlines() == [
        f"node/{node} already cordoned",
        "pod/alone evicted",
        f"node/{node} drained",
    ]
    assert f"Warning: deleting pods that declare no controller: {ns}/alone" in forced.err_lines
    await wait_gone(store, Pod, ns, "alone")


async def test_drain_times_out_naming_the_pods_left(plane: ControlPlane, cluster: Cluster) -> None:
    client, _, ns = cluster
    name = f"dead-{uuid.uuid4().hex[:6]}"  # no agent: nothing will finish its pods
    await client.create(Node(metadata=ObjectMeta(name=name), spec=NodeSpec()))
    try:
        await client.create(bare_pod(ns, "stuck", name))
        result = await steer(plane, "drain", name, "--force", "--timeout", "1s")
        assert result.code == 1
        assert (
            result.err_lines[-1]
            == f'error: unable to drain node "{name}": pods still there after 1s: {ns}/stuck'
        )
        assert "drained" not in result.out
    finally:
        with contextlib.suppress(NotFound):
            await client.delete(Node, name, "")


async def test_drain_errors_are_one_clear_line(plane: ControlPlane, cluster: Cluster) -> None:
    unknown = await steer(plane, "drain", "no-such-node")
    assert unknown.code == 1
    assert unknown.err_lines == ['Error from server (NotFound): nodes "no-such-node" not found']
    node = plane.agents[0].name
    bad_timeout = await steer(plane, "drain", node, "--timeout", "soon")
    assert bad_timeout.code == 2
    assert bad_timeout.err_lines[0].startswith('error: --timeout: invalid duration "soon"')
    bad_grace = await steer(plane, "drain", node, "--grace-period", "-5")
    assert bad_grace.code == 2
    assert bad_grace.err_lines == ["error: --grace-period must be -1 (each pod's own) or a number of seconds"]
    assert not (await cluster[0].get(Node, node, "")).spec.unschedulable  # nothing was done
