"""The scheduler: places every unbound pod on a fitting node, and says why when none fits.

Decisions are made against a cache (informers of nodes and pods, plus the pods this scheduler
has placed but not yet seen bound), so one slow round trip never stalls the queue: a pod is
*assumed* on its node at once and bound in the background. A bind that fails un-assumes the pod
and puts it back in the queue: at once when the pod changed meanwhile (a Conflict), after a
per-pod back-off when the API did not take it (a Timeout, the API away, an Invalid). Binding is
a compare-and-set patch of `spec.nodeName`, so two schedulers running at once still bind each
pod exactly once.

A pod that fits nowhere gets PodScheduled=False (reason Unschedulable, Kubernetes' message) and
a FailedScheduling event, and waits until the cluster changes in a way that may let it fit: a
node added or changed (ready, cordon, taints, labels, allocatable) or a pod gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from typing import Any

import msgspec

from bus.client import Client
from bus.errors import Conflict, NotFound, SteerError
from bus.events import now
from bus.informer import Change, Informer, key_of
from bus.recorder import Recorder
from bus.resources import Node, Pod
from bus.resources.pod import PodCondition
from bus.store import Store
from bus.workqueue import Backoff
from services.scheduler.placement import NodeState, PodRequest, choose, node_state, request_of

log = logging.getLogger(__name__)

SCHEDULER_NAME = "default-scheduler"
MAX_BINDS_IN_FLIGHT = 256
BIND_BACKOFF = Backoff(base=0.5, cap=30.0)  # per pod, after a failed bind
STATUS_TRIES = 3  # compare-and-set tries of an Unschedulable condition


def _placement_fields(state: NodeState) -> tuple[object, ...]:
    """What about a node may let a waiting pod fit (usage aside)."""
    return (state.ready, state.unschedulable, state.taints, state.labels, state.cpu, state.memory, state.pods)


def _finished(pod: Pod) -> bool:
    return pod.status.phase in ("Succeeded", "Failed")


class Scheduler:
    def __init__(
        self, client: Client, store: Store, tasks: asyncio.TaskGroup, *, name: str = SCHEDULER_NAME
    ) -> None:
        self.client = client
        self.tasks = tasks
        self.name = name
        self.recorder = Recorder(client, component=name)
        self.nodes: Informer[Node] = Informer(store, Node)
        self.pods: Informer[Pod] = Informer(store, Pod)
        self.states: dict[str, NodeState] = {}
        self.order: list[NodeState] = []
        self.placed: dict[str, tuple[str, PodRequest]] = {}  # pod key -> (node, request), bound or assumed
        self.assumed: set[str] = set()
        self.queue: deque[str] = deque()
        self.queued: set[str] = set()
        self.waiting = asyncio.Event()
        self.unschedulable: dict[str, str] = {}  # pod key -> the message last reported
        self.bind_failures: dict[str, int] = {}  # pod key -> failed binds in a row
        self.binds = asyncio.Semaphore(MAX_BINDS_IN_FLIGHT)
        self.rotation = 0
        self.bound = 0
        self.nodes.on_change(self._on_node)
        self.pods.on_change(self._on_pod)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.tasks.create_task(coro)

    # -- the cache

    def _on_node(self, change: Change, old: Node | None, new: Node | None) -> None:
        name = (new or old).metadata.name  # type: ignore[union-attr]
        previous = self.states.pop(name, None)
        if new is not None:
            state = node_state(new)
            for placed_node, req in self.placed.values():
                if placed_node == name:
                    state.add(req)
            self.states[name] = state
            if previous is None or _placement_fields(previous) != _placement_fields(state):
                self._retry_unschedulable()
        self.order = sorted(self.states.values(), key=lambda s: s.name)

    def _on_pod(self, change: Change, old: Pod | None, new: Pod | None) -> None:
        pod = new or old
        assert pod is not None
        key = key_of(pod)
        gone = new is None or new.metadata.deletion_timestamp is not None or _finished(new)
        if gone:
            self._release(key)
            self.unschedulable.pop(key, None)
            self.bind_failures.pop(key, None)
            self._retry_unschedulable()  # what it held is free again
            return
        assert new is not None
        if new.spec.node_name:
            self.unschedulable.pop(key, None)
            self.bind_failures.pop(key, None)
            self._account(key, new)
        elif new.spec.scheduler_name == self.name and key not in self.placed:
            spec_changed = old is None or old.metadata.generation != new.metadata.generation
            if spec_changed or key not in self.unschedulable:
                self.enqueue(key)

    def _account(self, key: str, pod: Pod) -> None:
        """A bound pod uses its node's resources (once, whether we assumed it or not)."""
        placed = self.placed.get(key)
        self.assumed.discard(key)
        if placed is not None and placed[0] == pod.spec.node_name:
            return
        self._release(key)
        req = request_of(pod)
        self.placed[key] = (pod.spec.node_name, req)
        state = self.states.get(pod.spec.node_name)
        if state is not None:
            state.add(req)

    def _release(self, key: str) -> None:
        placed = self.placed.pop(key, None)
        self.assumed.discard(key)
        if placed is not None and (state := self.states.get(placed[0])) is not None:
            state.remove(placed[1])

    # -- the queue

    def enqueue(self, key: str) -> None:
        if key not in self.queued:
            self.queued.add(key)
            self.queue.append(key)
            self.waiting.set()

    def _retry_unschedulable(self) -> None:
        for key in list(self.unschedulable):
            self.enqueue(key)

    async def _next(self) -> str:
        while not self.queue:
            self.waiting.clear()
            await self.waiting.wait()
        key = self.queue.popleft()
        self.queued.discard(key)
        return key

    # -- scheduling

    async def run(self) -> None:
        """Schedule until cancelled (start the informers first)."""
        await self.nodes.synced.wait()
        await self.pods.synced.wait()
        while True:
            key = await self._next()
            pod = self.pods.get(key)
            if pod is None or pod.spec.node_name or pod.metadata.deletion_timestamp or key in self.placed:
                continue
            self.schedule(key, pod)
            await asyncio.sleep(0)  # let informer updates and binds in between

    def schedule(self, key: str, pod: Pod) -> None:
        try:
            req = request_of(pod)
        except ValueError as err:  # validation should have caught it; never stop the queue
            self._report(pod, f"cannot read the pod's requests: {err}")
            return
        decision = choose(req, self.order, start=self.rotation)
        self.rotation = decision.next_start
        if decision.node is None:
            self._report(pod, decision.message)
            return
        self.placed[key] = (decision.node, req)
        self.assumed.add(key)
        self.states[decision.node].add(req)
        self.unschedulable.pop(key, None)
        self.spawn(self._bind(key, pod, decision.node))

    async def _bind(self, key: str, pod: Pod, node: str) -> None:
        async with self.binds:
            patch = {
                "metadata": {"resourceVersion": pod.metadata.resource_version},
                "spec": {"nodeName": node},
            }
            try:
                await self.client.patch(Pod, pod.metadata.name, patch, pod.metadata.namespace)
            except NotFound:
                self._unassume(key)  # deleted meanwhile: nothing to place
                return
            except Conflict:
                await self._lost_bind(key, pod)
                return
            except SteerError as err:  # Timeout, Unavailable, Invalid: this pod waits and tries again
                self._unassume(key)
                self._retry_later(key, f"binding {key} to {node} failed: {err}")
                return
        self.bind_failures.pop(key, None)
        self.bound += 1
        message = f"Successfully assigned {key} to {node}"
        await self.recorder.normal(pod, "Scheduled", message)

    async def _lost_bind(self, key: str, pod: Pod) -> None:
        """The pod changed under us: bound by someone else, or just updated. Look again."""
        self._unassume(key)
        try:
            current = await self.client.get(Pod, pod.metadata.name, pod.metadata.namespace)
        except NotFound:
            return
        except SteerError as err:
            self._retry_later(key, f"{key} changed while being bound, and reading it again failed: {err}")
            return
        if current.spec.node_name:
            self._account(key, current)
        elif current.metadata.deletion_timestamp is None:
            self.pods.put(current)
            self.enqueue(key)

    def _retry_later(self, key: str, why: str) -> None:
        """Queue the pod again after its back-off (doubling per failure): a failed bind never
        drops a pod, and a bind that keeps failing does not spin."""
        failures = self.bind_failures.get(key, 0)
        self.bind_failures[key] = failures + 1
        delay = BIND_BACKOFF.delay(failures)
        log.warning("%s; trying again in %.1fs", why, delay)
        asyncio.get_running_loop().call_later(delay, self.enqueue, key)

    def _unassume(self, key: str) -> None:
        if key in self.assumed:
            self._release(key)

    def _report(self, pod: Pod, message: str) -> None:
        key = key_of(pod)
        if self.unschedulable.get(key) == message:
            return
        self.unschedulable[key] = message
        self.spawn(self._write_unschedulable(pod, message))

    async def _write_unschedulable(self, pod: Pod, message: str) -> None:
        """PodScheduled=False on the pod, compare-and-set: after a Conflict the pod is read
        again and, if still unbound and still ours to say, the condition is set on that."""
        key = key_of(pod)
        condition = PodCondition(
            type="PodScheduled",
            status="False",
            reason="Unschedulable",
            message=message,
            last_transition_time=now(),
        )
        for _ in range(STATUS_TRIES):
            others = [c for c in pod.status.conditions if c.type != "PodScheduled"]
            status = msgspec.structs.replace(pod.status, conditions=[*others, condition])
            try:
                await self.client.update_status(Pod(metadata=pod.metadata, spec=pod.spec, status=status))
                break
            except Conflict:
                try:
                    pod = await self.client.get(Pod, pod.metadata.name, pod.metadata.namespace)
                except SteerError as err:
                    log.info("could not mark %s unschedulable: %s", key, err)
                    return
                if (
                    pod.spec.node_name
                    or pod.metadata.deletion_timestamp
                    or self.unschedulable.get(key) != message
                ):
                    return  # bound, going, or judged again meanwhile: nothing to say any more
            except NotFound:
                return
            except SteerError as err:
                log.info("could not mark %s unschedulable: %s", key, err)
                break
        else:
            log.info("could not mark %s unschedulable: it kept changing", key)
        await self.recorder.warning(pod, "FailedScheduling", message)
