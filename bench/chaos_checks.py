"""The invariants of a chaos run, each a function that returns the problems it found.

- nothing stuck Terminating (sampled throughout: `TerminatingWatch`);
- no pod evicted because of a bus outage: an eviction counts as explained only when its node's
  agent was killed shortly before (`evictions`);
- no container running on a node that no pod there owns (`orphan_containers`, asked of the
  runtimes themselves, not of the cluster's own view);
- every Deployment converges to its acknowledged spec (`convergence`), timed from the last kill;
- every component is back and announced (`components`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from nats.aio.client import Client as NATS

from bench.chaos_workload import CRASHER, NAMESPACE, TOKEN, Desired
from bus import events, subjects
from bus.client import Client
from bus.connection import discover
from bus.errors import SteerError
from bus.resources import Deployment, Pod
from nodeagent.runtime.factory import make_runtime

STUCK_AFTER = 90.0  # seconds Terminating beyond the grace period that count as stuck
EXPLAINED_EVICTION = 60.0  # an eviction this soon after its node's agent was killed is explained


@dataclass(frozen=True)
class Kill:
    at: float  # monotonic
    role: str
    name: str
    pid: int
    standing: str = ""  # "leader" or "follower", for a replica of an elected service


@dataclass
class TerminatingWatch:
    """Samples pods now and then: where each runs, and since when each has been Terminating."""

    client: Client
    node_of: dict[str, str] = field(default_factory=dict)  # pod name -> node
    since: dict[str, float] = field(default_factory=dict)  # pod uid -> first seen Terminating
    stuck: dict[str, str] = field(default_factory=dict)  # pod uid -> description
    samples: int = 0

    async def sample(self) -> None:
        try:
            pods = await self.client.list(Pod, subjects.ALL)
        except SteerError:
            return  # the API is down this moment: the next sample sees
        self.samples += 1
        moment = time.monotonic()
        live: set[str] = set()
        for pod in pods:
            if pod.spec.node_name:
                self.node_of[pod.metadata.name] = pod.spec.node_name
            if pod.metadata.deletion_timestamp is None:
                continue
            uid = pod.metadata.uid
            live.add(uid)
            first = self.since.setdefault(uid, moment)
            grace = pod.metadata.deletion_grace_period_seconds or 0
            if moment - first > grace + STUCK_AFTER and uid not in self.stuck:
                self.stuck[uid] = (
                    f"pod {pod.metadata.namespace}/{pod.metadata.name} on {pod.spec.node_name or '-'} "
                    f"Terminating for {moment - first:.0f}s"
                )
        for uid in [u for u in self.since if u not in live]:
            del self.since[uid]

    async def run(self, stop: asyncio.Event, every: float = 2.0) -> None:
        while not stop.is_set():
            await self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)


async def evictions(
    nc: NATS, *, since: timedelta, kills: list[Kill], node_of: dict[str, str], started: float
) -> tuple[list[str], list[str]]:
    """(unexplained, explained) TaintManagerEviction events of the run."""
    unexplained: list[str] = []
    explained: list[str] = []
    agent_kills = [k for k in kills if k.role == "nodeagent"]
    async for event in events.read(nc.jetstream(), subject_filter=subjects.events_all(), since=since):
        if event.reason != "TaintManagerEviction":
            continue
        pod = event.involved_object.name
        node = node_of.get(pod, "?")
        stamp = event.last_timestamp or event.first_timestamp
        # Event times are wall clock, kills monotonic: compare both as seconds into the run.
        at = stamp.timestamp() - (time.time() - (time.monotonic() - started)) if stamp else 0.0
        line = f"{pod} on {node} at +{at:.1f}s"
        killed_before = any(
            k.name == node and 0 <= at - (k.at - started) <= EXPLAINED_EVICTION for k in agent_kills
        )
        (explained if killed_before else unexplained).append(line)
    return unexplained, explained


def settled(deployment: Deployment, desired: Desired, pods: list[Pod]) -> bool:
    """The Deployment runs its acknowledged spec: generation observed, every replica updated (and
    ready, but for the crash-looping one), and no other pod of it left."""
    status, want = deployment.status, desired.replicas
    if status.observed_generation < deployment.metadata.generation or deployment.spec.replicas != want:
        return False
    name = deployment.metadata.name
    mine = [
        pod
        for pod in pods
        if pod.metadata.labels.get("app") == name and pod.metadata.deletion_timestamp is None
    ]
    current = all(pod.metadata.annotations.get(TOKEN) == desired.token for pod in mine)
    counts = status.replicas == status.updated_replicas == want and len(mine) == want and current
    return counts if name == CRASHER else counts and status.ready_replicas == want


async def convergence(
    client: Client, desired: dict[str, Desired], *, since: float, within: float
) -> dict[str, float | None]:
    """Seconds from `since` (monotonic) until each Deployment settled; None if not within `within`."""
    times: dict[str, float | None] = dict.fromkeys(desired)
    deadline = since + within
    while any(t is None for t in times.values()) and time.monotonic() < deadline:
        try:
            pods = await client.list(Pod, NAMESPACE)
            for name in [n for n, t in times.items() if t is None]:
                if settled(await client.get(Deployment, name, NAMESPACE), desired[name], pods):
                    times[name] = time.monotonic() - since
        except SteerError as err:  # a component is still coming back: look again
            del err
        await asyncio.sleep(0.5)  # polling status: a bench measures, it is not a test
    return times


async def orphan_containers(client: Client, data: Path, nodes: list[str], runtime: str) -> list[str]:
    """Running containers that no pod on their node owns, as each node's runtime lists them."""
    pods = await client.list(Pod, subjects.ALL)
    owned = {(pod.spec.node_name, pod.metadata.uid) for pod in pods}
    problems: list[str] = []
    for node in nodes:
        rt = await make_runtime(runtime, root_dir=data / "nodes" / node)
        try:
            for info in await rt.containers(node):
                if info.status == "running" and (node, info.pod_uid) not in owned:
                    problems.append(
                        f"{node}: container {info.id[:12]} of pod {info.pod_namespace}/{info.pod_name} "
                        f"({info.pod_uid[:8]}) runs, but no such pod is bound there"
                    )
        finally:
            await rt.close()
    return problems


async def components(nc: NATS, expected: dict[str, int], *, within: float = 60.0) -> list[str]:
    """Roles announced fewer times than expected (`steer-api`: 2, ...) once `within` seconds have
    passed (a supervisor restarts with a back-off)."""
    deadline = time.monotonic() + within
    while True:
        found = await discover(nc, wait=1.0)
        problems = [
            f"{name}: {seen} announced, {count} expected"
            for name, count in expected.items()
            if (seen := sum(c.name == name for c in found)) < count
        ]
        if not problems or time.monotonic() >= deadline:
            return problems
