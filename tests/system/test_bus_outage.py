"""A bus outage is not a node failure: nats-server down for 0.2 s, 5 s and 30 s evicts nothing and
restarts nothing, while a node agent that really dies still has its pods running elsewhere within
30 s. A whole cluster of real processes (nats-server, API, scheduler, controllers, three Docker
node agents, all with their default timings) and real running containers.

After each outage the test waits until every agent has renewed its Lease again (it is heard),
then watches for as long as the node lifecycle controller would take to evict a dead node's
pods (grace, settle and toleration, from when it hears again): no node may be tainted, no pod
deleted. Then the same pods must run in the same containers, none restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from bus.meta import LabelSelector, ObjectMeta, is_true
from bus.protocol import NODE_LEASE_NAMESPACE
from bus.resources import Deployment, Lease, Node, Pod
from bus.resources.apps import DeploymentSpec
from bus.resources.pod import Container, PodSpec, PodTemplateSpec
from bus.store import Store
from services.controllers import nodetaints
from services.controllers.nodelifecycle import DEFAULT_GRACE, DEFAULT_SETTLE, DEFAULT_TOLERATION_SECONDS
from tests.agents import node_ready
from tests.cluster import ControlPlane
from tests.nodeagent.conftest import IMAGE
from tests.waiting import wait_for, wait_for_all

pytestmark = pytest.mark.usefixtures("docker_engine")

REPLICAS = 6
# How long after the controller hears again a dead node's pods would be evicted, and some slack
# for a busy machine: nothing may happen within it.
EVICTION_WOULD_TAKE = DEFAULT_GRACE + DEFAULT_SETTLE + DEFAULT_TOLERATION_SECONDS + 3


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[ControlPlane]:
    with ControlPlane.running(tmp_path_factory.mktemp("busoutage")) as plane:
        plane.start_scheduler()
        plane.start_controllers()
        for _ in range(3):
            plane.start_agent("docker")
        yield plane


def sleepers(ns: str) -> Deployment:
    labels = {"app": "sleeper"}
    spec = PodSpec(
        containers=[Container(name="main", image=IMAGE, command=["sleep", "3600"])],
        termination_grace_period_seconds=1,
    )
    return Deployment(
        metadata=ObjectMeta(name="sleeper", namespace=ns),
        spec=DeploymentSpec(
            replicas=REPLICAS,
            selector=LabelSelector(match_labels=labels),
            template=PodTemplateSpec(metadata=ObjectMeta(labels=labels), spec=spec),
        ),
    )


def all_running(count: int, *, on: set[str] | None = None):  # type: ignore[no-untyped-def]
    def check(pods: list[Pod]) -> bool:
        live = [p for p in pods if p.metadata.deletion_timestamp is None]
        return len(live) == count and all(
            p.status.phase == "Running"
            and is_true(p.status.conditions)
            and (on is None or p.spec.node_name in on)
            for p in live
        )

    return check


@dataclass(frozen=True)
class Running:
    """What must not change: each pod's uid, node, containers and restarts."""

    pods: dict[str, tuple[str, str, tuple[str, ...], tuple[int, ...]]] = field(default_factory=dict)

    @classmethod
    def of(cls, pods: list[Pod]) -> Running:
        return cls(
            {
                p.metadata.name: (
                    p.metadata.uid,
                    p.spec.node_name,
                    tuple(c.container_id for c in p.status.container_statuses),
                    tuple(c.restart_count for c in p.status.container_statuses),
                )
                for p in pods
            }
        )


async def docker_containers(ns: str) -> set[str]:
    """Ids of the running containers of the namespace's pods, as Docker lists them."""
    proc = await asyncio.create_subprocess_exec(
        "docker",
        "ps",
        "--no-trunc",
        "--filter=status=running",
        f"--filter=label=steersman.io/pod-namespace={ns}",
        "--format",
        "{{.ID}}",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    return set(out.decode().split())


async def nothing_goes_wrong(store: Store, ns: str, *, until: float) -> None:
    """Watch nodes and pods until `until` (wall clock); fail at the first node tainted unhealthy
    or pod deleted or marked for deletion."""

    async def nodes() -> None:
        async with contextlib.aclosing(store.watch(Node, "")) as events:
            async for event in events:
                node = event.object
                if node is not None and any(nodetaints.is_managed(t) for t in node.spec.taints):
                    raise AssertionError(f"node {node.metadata.name} tainted: {node.spec.taints}")

    async def pods() -> None:
        async with contextlib.aclosing(store.watch(Pod, ns)) as events:
            async for event in events:
                pod = event.object
                if pod is not None and (event.type == "DELETED" or pod.metadata.deletion_timestamp):
                    raise AssertionError(f"pod {pod.metadata.name} deleted or terminating")

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(until - time.time(), 0)), asyncio.TaskGroup() as watching:
            watching.create_task(nodes())
            watching.create_task(pods())


async def heard_again(store: Store, agents: list[str], since: float, *, within: float) -> None:
    """Until every agent has renewed its Lease after `since` (a wall-clock time)."""
    renewed: set[str] = set()
    try:
        async with asyncio.timeout(within):
            async with contextlib.aclosing(store.watch(Lease, NODE_LEASE_NAMESPACE)) as events:
                async for event in events:
                    lease = event.object
                    stamp = lease.spec.renew_time if lease is not None else None
                    if lease is not None and stamp is not None and stamp.timestamp() > since:
                        renewed.add(lease.metadata.name)
                    if renewed >= set(agents):
                        return
    except TimeoutError:
        missing = sorted(set(agents) - renewed)
        raise AssertionError(
            f"agents {missing} were not heard from within {within:g}s of the bus's return"
        ) from None


async def outage(plane: ControlPlane, seconds: float) -> float:
    """nats-server killed, and started again `seconds` later; the wall-clock time it is back."""
    plane.server.kill()
    await asyncio.sleep(seconds)  # the outage itself: the fault, not a wait for a condition
    await asyncio.to_thread(plane.server.start_again)
    return time.time()


@pytest.mark.timeout(600)
async def test_a_bus_outage_evicts_nothing_while_a_dead_agent_is_replaced(plane: ControlPlane) -> None:
    names = [a.name for a in plane.agents]
    async with plane.connect() as (client, store):
        for name in names:
            await wait_for(store, Node, "", name, node_ready, within=60)
        ns = await plane.namespace(client)
        await client.create(sleepers(ns))
        before = Running.of(await wait_for_all(store, Pod, ns, all_running(REPLICAS), within=120))
        containers = await docker_containers(ns)
        assert len(containers) == REPLICAS

    for seconds in (0.2, 5.0, 30.0):
        back = await outage(plane, seconds)
        async with plane.connect() as (client, store):
            # From the bus's return for as long as an eviction would take, nothing may go wrong;
            # meanwhile every agent must be heard from again.
            async with asyncio.TaskGroup() as checks:
                checks.create_task(nothing_goes_wrong(store, ns, until=back + EVICTION_WOULD_TAKE))
                checks.create_task(heard_again(store, names, back, within=30))
            pods = await wait_for_all(store, Pod, ns, all_running(REPLICAS), within=30)
            assert Running.of(pods) == before, f"after a {seconds:g}s outage, pods changed"
            assert await docker_containers(ns) == containers, f"after a {seconds:g}s outage"

    # An agent that really dies (and stays dead): its pods run elsewhere within 30 s.
    async with plane.connect() as (client, store):
        victim = next(a for a in plane.agents if any(p[1] == a.name for p in before.pods.values()))
        victim.kill()
        died = time.monotonic()
        survivors = {a.name for a in plane.agents if a is not victim}
        await wait_for_all(store, Pod, ns, all_running(REPLICAS, on=survivors), within=60)
        took = time.monotonic() - died
        assert took < 30, f"the pods of a dead node ran elsewhere after {took:.0f}s"
        kept = [name for name, (_, node, _, _) in before.pods.items() if node in survivors]
        pods = {p.metadata.name for p in await client.list(Pod, ns)}
        assert set(kept) <= pods  # the pods of live nodes were left alone
