"""The node lifecycle controller in a control plane of its own (tests/cluster.py): nodes that stop
heartbeating become Unknown and tainted, their pods are evicted per their tolerations and replaced
elsewhere, and a node that comes back stops what it ran meanwhile; nodes that fall silent together
are tainted but keep their pods. The controllers run with short timings: a node is silent after
4 s, its evictions may begin 1 s later, and pods tolerate a sick node for 2 s by default.

Two bystander nodes (hollow agents nothing is scheduled on) stay healthy throughout, so that one
node down is one node of several, as in any real cluster: a lone node that goes silent is a
fully disrupted zone, whose pods are never evicted."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime

import pytest

from bus.client import Client
from bus.errors import Conflict, NotFound
from bus.events import now
from bus.meta import LabelSelector, ObjectMeta, is_true
from bus.resources import Event, Node, Pod, ReplicaSet
from bus.resources.apps import ReplicaSetSpec
from bus.resources.cluster import NodeCondition, NodeSpec, NodeStatus
from bus.resources.pod import Container, PodSpec, PodTemplateSpec, Toleration
from bus.store import Store
from services.controllers import nodetaints
from services.controllers.nodetaints import NOT_READY, UNKNOWN_REASON, UNREACHABLE
from tests.agents import AgentProcess, node_ready, remove_containers
from tests.cluster import ControlPlane
from tests.nodeagent.conftest import IMAGE, docker_engine  # noqa: F401  (a fixture)
from tests.waiting import wait_for, wait_gone

GRACE = 4
SETTLE = 1
DEFAULT_TOLERATION = 2
BYSTANDER = "bystander=yes:NoSchedule"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane.running(tmp_path_factory.mktemp("nodelifecycle")) as plane:
        plane.start_scheduler()
        plane.start_controllers(
            "--node-grace",
            str(GRACE),
            "--node-eviction-settle",
            str(SETTLE),
            "--default-toleration-seconds",
            str(DEFAULT_TOLERATION),
        )
        for _ in range(2):
            plane.start_agent("fake", "--lease", f"{GRACE},1", "--taints", BYSTANDER)
        asyncio.run(bystanders_ready(plane))
        yield plane


async def bystanders_ready(plane: ControlPlane) -> None:
    async with plane.connect() as (_, store):
        for agent in plane.agents:
            await wait_for(store, Node, "", agent.name, node_ready)


@pytest.fixture
async def cluster(plane: ControlPlane) -> AsyncIterator[tuple[Client, Store, str]]:
    async with plane.connect() as (client, store):
        yield client, store, await plane.namespace(client)


StartAgent = Callable[..., Awaitable[AgentProcess]]


@pytest.fixture
async def start(plane: ControlPlane, cluster: tuple[Client, Store, str]) -> AsyncIterator[StartAgent]:
    """Start a node agent (heartbeat every second); returns once it is Ready. Afterwards the agent
    stops and its Node goes, so that no later test schedules onto a node about to fall silent."""
    client, store, _ = cluster
    started: list[AgentProcess] = []

    async def start_agent(runtime: str, *extra: str) -> AgentProcess:
        agent = plane.start_agent(runtime, "--lease", f"{GRACE},1", *extra)
        started.append(agent)
        await wait_for(store, Node, "", agent.name, node_ready)
        return agent

    yield start_agent
    for agent in started:
        agent.stop()
        remove_containers(agent.name)
        with contextlib.suppress(NotFound):
            await client.delete(Node, agent.name, "")


# -- helpers


def taint_keys(node: Node, effect: str = "NoExecute") -> set[str]:
    return {t.key for t in node.spec.taints if t.effect == effect}


def health_taints(node: Node) -> list[str]:
    """The taints the controller manages, as `key:effect`."""
    return [f"{t.key}:{t.effect}" for t in node.spec.taints if nodetaints.is_managed(t)]


def ready_condition(node: Node) -> NodeCondition:
    return next(c for c in node.status.conditions if c.type == "Ready")


def hand_made_node(name: str, ready: str) -> Node:
    """A Node no agent runs (cordoned, so that nothing is scheduled there)."""
    condition = NodeCondition(type="Ready", status=ready, last_heartbeat_time=now())  # type: ignore[arg-type]
    return Node(
        metadata=ObjectMeta(name=name),
        spec=NodeSpec(unschedulable=True),
        status=NodeStatus(conditions=[condition], allocatable={"cpu": "1", "memory": "1Gi", "pods": "10"}),
    )


async def post_ready(client: Client, name: str) -> Node:
    """Post Ready=True with a fresh heartbeat, as an agent does (compare-and-set, read again on
    a Conflict: the controller may have written the node meanwhile)."""
    for _ in range(10):
        node = await client.get(Node, name, "")
        node.status.conditions = [NodeCondition(type="Ready", status="True", last_heartbeat_time=now())]
        try:
            return await client.update_status(node)
        except Conflict:
            continue
    raise AssertionError(f"node {name} kept changing")


def bound_pod(ns: str, name: str, node: str, tolerations: list[Toleration] | None = None) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=ns),
        spec=PodSpec(
            containers=[Container(name="main", image=IMAGE, command=["sleep", "3600"])],
            node_name=node,
            tolerations=tolerations or [],
            termination_grace_period_seconds=1,
        ),
    )


def terminating(pod: Pod) -> bool:
    return pod.metadata.deletion_timestamp is not None


def seconds_between(earlier: datetime | None, later: datetime | None) -> float:
    assert earlier is not None and later is not None
    return (later - earlier).total_seconds()


async def wait_event(store: Store, namespace: str, involved: str, reason: str) -> Event:
    async with asyncio.timeout(30), contextlib.aclosing(store.watch(Event, namespace)) as events:
        async for event in events:
            obj = event.object
            if obj is not None and obj.involved_object.name == involved and obj.reason == reason:
                return obj
    raise AssertionError("the watch ended")


async def wait_pods(
    store: Store, ns: str, check: Callable[[list[Pod]], bool], *, within: float = 60
) -> list[Pod]:
    """The namespace's pods (terminating ones included) once `check` holds for them."""
    pods: dict[str, Pod] = {}
    synced = False
    try:
        async with asyncio.timeout(within), contextlib.aclosing(store.watch(Pod, ns)) as events:
            async for event in events:
                synced = synced or event.type == "SYNCED"
                if event.object is not None:
                    if event.type == "DELETED":
                        pods.pop(event.object.metadata.name, None)
                    else:
                        pods[event.object.metadata.name] = event.object
                if synced and check(list(pods.values())):
                    return list(pods.values())
    except TimeoutError:
        raise AssertionError(f"pods of {ns} never settled: {[summary(p) for p in pods.values()]}") from None
    raise AssertionError("the watch ended")


def summary(pod: Pod) -> str:
    gone = " terminating" if terminating(pod) else ""
    return f"{pod.metadata.name}@{pod.spec.node_name}:{pod.status.phase}{gone}"


def live(pods: list[Pod]) -> list[Pod]:
    return [p for p in pods if not terminating(p) and p.status.phase not in ("Succeeded", "Failed")]


def running_on(pods: list[Pod], node: str) -> list[Pod]:
    return [p for p in live(pods) if p.spec.node_name == node and is_true(p.status.conditions)]


async def running_containers(*filters: str) -> list[str]:
    """`<node>/<pod>/<attempt>` of each running container with these labels."""
    args = [f"--filter=label={f}" for f in filters]
    shown = (
        '{{.Label "steersman.io/node"}}/{{.Label "steersman.io/pod-name"}}/{{.Label "steersman.io/attempt"}}'
    )
    proc = await asyncio.create_subprocess_exec(
        "docker", "ps", "--filter=status=running", *args, "--format", shown, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return out.decode().split()


# -- node health


async def test_a_not_ready_node_is_tainted_until_it_is_ready_again(
    cluster: tuple[Client, Store, str],
) -> None:
    client, store, _ = cluster
    name = f"sick-{uuid.uuid4().hex[:6]}"
    await client.create(hand_made_node(name, "False"))
    try:
        sick = await wait_for(store, Node, "", name, lambda n: NOT_READY in taint_keys(n))
        assert NOT_READY in taint_keys(sick, "NoSchedule")  # new pods kept off at once
        taint = next(t for t in sick.spec.taints if t.key == NOT_READY)
        assert taint.time_added is not None
        await wait_event(store, "default", name, "NodeNotReady")
        # The agent posts Ready again (a new heartbeat): the taint goes.
        await post_ready(client, name)
        await wait_for(store, Node, "", name, lambda n: not health_taints(n) and is_true(n.status.conditions))
    finally:
        await client.delete(Node, name, "")


async def test_a_silent_node_is_unknown_and_its_pods_go_as_they_tolerate(
    start: StartAgent, cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = cluster
    agent = await start("fake")
    unreachable = Toleration(key=UNREACHABLE, operator="Exists", effect="NoExecute")
    patient = Toleration(key=UNREACHABLE, operator="Exists", effect="NoExecute", toleration_seconds=6)
    await client.create(bound_pod(ns, "plain", agent.name))
    await client.create(bound_pod(ns, "patient", agent.name, [patient]))
    await client.create(bound_pod(ns, "forever", agent.name, [unreachable]))
    await wait_pods(store, ns, lambda pods: len(running_on(pods, agent.name)) == 3)

    agent.kill()
    node = await wait_for(store, Node, "", agent.name, lambda n: UNREACHABLE in taint_keys(n))
    condition = ready_condition(node)
    assert (condition.status, condition.reason) == ("Unknown", UNKNOWN_REASON)
    added = next(t.time_added for t in node.spec.taints if (t.key, t.effect) == (UNREACHABLE, "NoExecute"))

    plain = await wait_for(store, Pod, ns, "plain", terminating)
    assert seconds_between(added, plain.metadata.deletion_timestamp) >= DEFAULT_TOLERATION - 0.1
    await wait_event(store, ns, "plain", "TaintManagerEviction")
    later = await wait_for(store, Pod, ns, "patient", terminating)
    assert seconds_between(added, later.metadata.deletion_timestamp) >= 6 - 0.1
    forever = await client.get(Pod, "forever", ns)
    assert not terminating(forever)  # tolerates the taint for as long as it stays
    # A silent node's pods are not Ready (no traffic for them), whether evicted or kept.
    await wait_for(store, Pod, ns, "forever", lambda p: not is_true(p.status.conditions))
    await wait_event(store, ns, "forever", "NodeNotReady")

    # Evicted pods stay Terminating: only their agent can finish them. It comes back:
    agent.start()
    await wait_gone(store, Pod, ns, "plain")
    await wait_gone(store, Pod, ns, "patient")
    await wait_for(store, Node, "", agent.name, lambda n: not health_taints(n) and node_ready(n))
    assert not terminating(await client.get(Pod, "forever", ns))
    await wait_for(store, Pod, ns, "forever", lambda p: is_true(p.status.conditions))  # the agent says so


async def test_nodes_silent_together_are_tainted_but_keep_their_pods(
    start: StartAgent, cluster: tuple[Client, Store, str]
) -> None:
    """Three of five nodes (the bystanders are the other two) fall silent at once: a partial
    disruption of a small cluster. They are marked Unknown and tainted NoSchedule, an event on
    each says why nothing is evicted, and their pods stay until the agents come back."""
    client, store, ns = cluster
    agents = [await start("fake", "--lease", f"{GRACE},0.3") for _ in range(3)]
    for i, agent in enumerate(agents):
        await client.create(bound_pod(ns, f"p{i}", agent.name))
    await wait_pods(store, ns, lambda pods: all(len(running_on(pods, a.name)) == 1 for a in agents))

    for agent in agents:
        agent.pause()
    try:
        for agent in agents:
            node = await wait_for(
                store, Node, "", agent.name, lambda n: UNREACHABLE in taint_keys(n, "NoSchedule")
            )
            assert ready_condition(node).status == "Unknown"
            suspended = await wait_event(store, "default", agent.name, "EvictionSuspended")
            assert "3 of 5 nodes" in suspended.message and suspended.type == "Warning"
        # Well past the point where one dead node's pods would have gone (settle, toleration):
        await nothing_evicted(store, ns, for_seconds=SETTLE + DEFAULT_TOLERATION + 3)
        for agent in agents:  # tainted NoSchedule only: no NoExecute, which would evict
            assert UNREACHABLE not in taint_keys(await client.get(Node, agent.name, ""))
    finally:
        for agent in agents:
            agent.resume()
    for agent in agents:
        await wait_for(store, Node, "", agent.name, lambda n: not health_taints(n) and node_ready(n))
    pods = await wait_pods(store, ns, lambda pods: all(len(running_on(pods, a.name)) == 1 for a in agents))
    assert not any(terminating(p) for p in pods)


async def nothing_evicted(store: Store, ns: str, *, for_seconds: float) -> None:
    """Watch the namespace's pods for a while; fail at the first one marked for deletion."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(for_seconds), contextlib.aclosing(store.watch(Pod, ns)) as events:
            async for event in events:
                if event.object is not None and terminating(event.object):
                    raise AssertionError(f"pod {event.object.metadata.name} was evicted")


async def test_a_live_agent_restores_the_readiness_someone_else_wrote(
    start: StartAgent, cluster: tuple[Client, Store, str]
) -> None:
    """A node back from a partition finds its pods marked not ready: its agent writes them again."""
    client, store, ns = cluster
    agent = await start("fake")
    await client.create(bound_pod(ns, "steady", agent.name))
    pod = await wait_for(store, Pod, ns, "steady", lambda p: is_true(p.status.conditions))
    pod.status.conditions = nodetaints.pod_not_ready(pod.status.conditions, now()) or []
    await client.update_status(pod)
    await wait_for(store, Pod, ns, "steady", lambda p: is_true(p.status.conditions))


async def test_a_user_no_execute_taint_evicts_at_once_what_does_not_tolerate_it(
    start: StartAgent, cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = cluster
    agent = await start("fake", "--taints", "dedicated=gpu:NoExecute")
    guest = Toleration(key="dedicated", value="gpu", effect="NoExecute")
    await client.create(bound_pod(ns, "guest", agent.name, [guest]))
    await client.create(bound_pod(ns, "intruder", agent.name))
    await wait_gone(store, Pod, ns, "intruder")  # on a healthy node: only the taint explains it
    await wait_event(store, ns, "intruder", "TaintManagerEviction")
    await wait_pods(
        store, ns, lambda pods: [p.metadata.name for p in running_on(pods, agent.name)] == ["guest"]
    )


async def test_the_pods_of_a_deleted_node_are_deleted(cluster: tuple[Client, Store, str]) -> None:
    client, store, ns = cluster
    name = f"gone-{uuid.uuid4().hex[:6]}"
    await client.create(hand_made_node(name, "True"))
    await client.create(bound_pod(ns, "left", name))
    await client.create(bound_pod(ns, "leaving", name))
    await client.delete(Pod, "leaving", ns)
    assert terminating(await client.get(Pod, "leaving", ns))  # its node agent would finish it; none will
    await client.delete(Node, name, "")
    await wait_gone(store, Pod, ns, "left", within=30)
    await wait_gone(store, Pod, ns, "leaving", within=30)


# -- a node dies with real containers


def replicaset(ns: str, replicas: int) -> ReplicaSet:
    labels = {"app": "sleeper"}
    spec = PodSpec(
        containers=[Container(name="main", image=IMAGE, command=["sleep", "3600"])],
        termination_grace_period_seconds=1,
    )
    return ReplicaSet(
        metadata=ObjectMeta(name="sleeper", namespace=ns),
        spec=ReplicaSetSpec(
            replicas=replicas,
            selector=LabelSelector(match_labels=labels),
            template=PodTemplateSpec(metadata=ObjectMeta(labels=labels), spec=spec),
        ),
    )


async def most_live_pods(store: Store, ns: str, seen: list[int]) -> None:
    """Record the largest number of live pods the namespace ever had."""
    pods: dict[str, Pod] = {}
    async with contextlib.aclosing(store.watch(Pod, ns)) as events:
        async for event in events:
            if event.object is None:
                continue
            if event.type == "DELETED":
                pods.pop(event.object.metadata.name, None)
            else:
                pods[event.object.metadata.name] = event.object
            seen.append(len(live(list(pods.values()))))


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
@pytest.mark.timeout(240)
async def test_a_killed_node_s_pods_run_elsewhere_and_its_containers_stop_when_it_returns(
    start: StartAgent, cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = cluster
    agents = [await start("docker"), await start("docker")]
    counts: list[int] = []
    watcher = asyncio.create_task(most_live_pods(store, ns, counts))
    try:
        await client.create(replicaset(ns, 3))
        names = {a.name for a in agents}
        pods = await wait_pods(store, ns, lambda ps: sum(len(running_on(ps, n)) for n in names) == 3)
        victim = next(a for a in agents if any(p.spec.node_name == a.name for p in pods))
        survivor = next(a for a in agents if a is not victim)
        evicted = [p.metadata.name for p in pods if p.spec.node_name == victim.name]

        victim.kill()
        died = time.monotonic()
        node = await wait_for(store, Node, "", victim.name, lambda n: UNREACHABLE in taint_keys(n))
        assert ready_condition(node).status == "Unknown"
        await wait_pods(store, ns, lambda ps: len(running_on(ps, survivor.name)) == 3)
        assert time.monotonic() - died < 30, "the pods of a dead node must run elsewhere within 30 s"
        for name in evicted:
            await wait_for(store, Pod, ns, name, terminating)  # Terminating, and not counted
        # The dead agent's containers still run: nothing could stop them.
        assert await running_containers(f"steersman.io/node={victim.name}")

        counts.clear()  # from here on, nothing may be created: the evicted pods only finish
        victim.start()
        for name in evicted:
            await wait_gone(store, Pod, ns, name)  # the agent stopped the containers, then finished
        await wait_for(store, Node, "", victim.name, lambda n: not health_taints(n) and node_ready(n))
        assert await running_containers(f"steersman.io/node={victim.name}") == []
        running = await running_containers(f"steersman.io/pod-namespace={ns}")
        assert len(running) == 3, running
        assert max(counts) == 3, f"more live pods than desired after the node came back: {max(counts)}"
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
