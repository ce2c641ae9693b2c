"""The steersman half of bench/vs_swarm.py: one Deployment, deployed, scaled, healed and updated.

Readiness is what the Deployment's status says, as `kubectl rollout status` reads it: the
controller has observed the latest generation and replicas, updatedReplicas, readyReplicas and
availableReplicas all equal spec.replicas. The namespace's Deployments, ReplicaSets and Pods are
followed through store watches (list, SYNCED, then changes), started before each timed request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiodocker
import msgspec

from bus.client import Client
from bus.errors import NotFound, SteerError
from bus.meta import LabelSelector, ObjectMeta, Resource, is_true
from bus.resources import Deployment, Namespace, Pod, ReplicaSet
from bus.resources.apps import DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment
from bus.resources.pod import Container, EnvVar, PodSpec, PodTemplateSpec
from bus.store import Store
from nodeagent.runtime.base import LABEL_POD_NAMESPACE

ROLLOUT_ENV = "BENCH_ROLLOUT"
ENGINE_POLL = 0.1


def complete(deployment: Deployment | None, *, replicas: int, generation: int) -> bool:
    """Rolled out: `generation` observed, and every replica updated, ready and available."""
    if deployment is None or deployment.status.observed_generation < generation:
        return False
    status = deployment.status
    counts = (status.replicas, status.updated_replicas, status.ready_replicas, status.available_replicas)
    return deployment.spec.replicas == replicas and all(n == replicas for n in counts)


def pod_ready(pod: Pod | None) -> bool:
    return pod is not None and pod.metadata.deletion_timestamp is None and is_true(pod.status.conditions)


def pod_state(pod: Pod) -> str:
    """`Running`, `Pending (ContainerCreating)`, `Running (terminating)`: for error messages."""
    waiting = [s.state.waiting.reason for s in pod.status.container_statuses if s.state.waiting]
    notes = waiting + (["terminating"] if pod.metadata.deletion_timestamp else [])
    return f"{pod.status.phase} ({', '.join(notes)})" if notes else pod.status.phase


class NamespaceView:
    """The latest Deployments, ReplicaSets and Pods of one namespace, from three watches."""

    def __init__(self, store: Store, namespace: str) -> None:
        self.store = store
        self.namespace = namespace
        self.deployments: dict[str, Deployment] = {}
        self.replicasets: dict[str, ReplicaSet] = {}
        self.pods: dict[str, Pod] = {}
        self.changed = asyncio.Event()
        self._synced = (asyncio.Event(), asyncio.Event(), asyncio.Event())

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._follow(Deployment, self.deployments, self._synced[0]))
            tasks.create_task(self._follow(Pod, self.pods, self._synced[1]))
            tasks.create_task(self._follow(ReplicaSet, self.replicasets, self._synced[2]))

    async def _follow(self, cls: type[Any], into: dict[str, Any], synced: asyncio.Event) -> None:
        async with contextlib.aclosing(self.store.watch(cls, self.namespace)) as events:
            async for event in events:
                if event.type == "SYNCED":
                    synced.set()
                elif event.type == "DELETED":
                    into.pop(event.key, None)
                elif event.object is not None:
                    into[event.key] = event.object
                self.changed.set()

    async def synced(self) -> None:
        for event in self._synced:
            await event.wait()

    def deployment(self, name: str) -> Deployment | None:
        return next((d for d in self.deployments.values() if d.metadata.name == name), None)

    async def until(self, done: Callable[[], bool], *, within: float) -> float:
        """perf_counter() when `done` first holds (checked after every watch event)."""
        async with asyncio.timeout(within):
            while not done():
                self.changed.clear()
                await self.changed.wait()
        return time.perf_counter()


class SteersmanDeployment:
    """One round on steersman (see the module docstring)."""

    name = "steersman"

    def __init__(
        self,
        client: Client,
        view: NamespaceView,
        docker: aiodocker.Docker,
        *,
        deployment: str,
        image: str,
        command: list[str],
    ) -> None:
        self.client = client
        self.view = view
        self.docker = docker
        self.deployment = deployment
        self.image = image
        self.command = command
        self.replicas = 0
        self.generation = 0
        self.rollouts = 0

    def _container(self, env: list[EnvVar]) -> Container:
        return Container(name="main", image=self.image, command=self.command, env=env)

    def complete(self) -> bool:
        current = self.view.deployment(self.deployment)
        return complete(current, replicas=self.replicas, generation=self.generation)

    def describe(self) -> str:
        """The Deployment's counts and its pods' states, as last seen."""
        current = self.view.deployment(self.deployment)
        pods = Counter(pod_state(p) for p in self.view.pods.values())
        shown = f"pods: {', '.join(f'{n} {state}' for state, n in pods.most_common()) or 'none'}"
        if current is None:
            return f"no Deployment; {shown}"
        s = current.status
        return (
            f"Deployment observedGeneration {s.observed_generation} of {self.generation}, "
            f"replicas {s.replicas}, updated {s.updated_replicas}, ready {s.ready_replicas}, "
            f"available {s.available_replicas} (want {self.replicas}); {shown}"
        )

    async def _until(self, done: Callable[[], bool], *, within: float, what: str) -> float:
        try:
            return await self.view.until(done, within=within)
        except TimeoutError:
            raise TimeoutError(f"steersman: {what} not done within {within:g}s; {self.describe()}") from None

    async def deploy(self, replicas: int, *, parallelism: int, within: float) -> float:
        labels = {"app": self.deployment}
        spec = DeploymentSpec(
            replicas=replicas,
            selector=LabelSelector(match_labels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels),
                spec=PodSpec(containers=[self._container([])], termination_grace_period_seconds=0),
            ),
            strategy=DeploymentStrategy(
                type="RollingUpdate",
                rolling_update=RollingUpdateDeployment(max_surge=parallelism, max_unavailable=0),
            ),
        )
        meta = ObjectMeta(name=self.deployment, namespace=self.view.namespace)
        self.replicas = replicas
        began = time.perf_counter()
        created = await self.client.create(Deployment(metadata=meta, spec=spec))
        self.generation = created.metadata.generation
        return await self._until(self.complete, within=within, what=f"deploy {replicas}") - began

    async def _patch(self, patch: dict[str, Any]) -> None:
        patched = await self.client.patch(Deployment, self.deployment, patch, self.view.namespace)
        self.generation = patched.metadata.generation

    async def scale(self, replicas: int, *, within: float) -> float:
        self.replicas = replicas
        began = time.perf_counter()
        await self._patch({"spec": {"replicas": replicas}})
        return await self._until(self.complete, within=within, what=f"scale to {replicas}") - began

    async def heal(self, *, within: float) -> float:
        """Kill one pod's container; until it runs again, Ready, and the Deployment is complete."""
        key, victim = next((k, p) for k, p in self.view.pods.items() if pod_ready(p))
        status = victim.status.container_statuses[0]
        container = status.container_id.removeprefix("docker://")

        def healed() -> bool:
            pod = self.view.pods.get(key)
            statuses = pod.status.container_statuses if pod is not None else []
            restarted = bool(statuses) and statuses[0].restart_count > status.restart_count
            return restarted and pod_ready(pod) and self.complete()

        began = time.perf_counter()
        await self.docker.containers.container(container).kill()
        what = f"restart of pod {victim.metadata.name} after its container was killed"
        return await self._until(healed, within=within, what=what) - began

    async def roll_out(self, *, within: float) -> float:
        """Change an env var of the pod template; until the Deployment is complete again."""
        self.rollouts += 1
        container = self._container([EnvVar(name=ROLLOUT_ENV, value=str(self.rollouts))])
        patch = {"spec": {"template": {"spec": {"containers": [msgspec.to_builtins(container)]}}}}
        began = time.perf_counter()
        await self._patch(patch)
        return await self._until(self.complete, within=within, what="roll-out") - began

    async def remove(self, *, within: float = 120.0) -> None:
        """Delete the Deployment, its ReplicaSets and Pods (owner by owner: no garbage collector
        is assumed); until all are gone (not timed). Each object is deleted once, when seen alive."""
        view, namespace = self.view, self.view.namespace
        asked: set[tuple[str, str]] = set()

        async def delete(cls: type[Resource], objects: dict[str, Any], **options: Any) -> None:
            alive = [o.metadata.name for key, o in objects.items() if (cls.__name__, key) not in asked]
            asked.update((cls.__name__, key) for key in objects)
            await _delete(self.client, cls, alive, namespace, **options)

        async with asyncio.timeout(within):
            while view.deployments or view.replicasets or view.pods:
                view.changed.clear()
                await delete(Deployment, view.deployments)
                await delete(ReplicaSet, view.replicasets)
                await delete(Pod, view.pods, grace_period_seconds=0)
                await view.changed.wait()
            # The agent may remove a pod's containers after the pod is gone from the API: wait for
            # the engine too, so that the next round does not share it with this clean-up.
            filters = json.dumps({"label": [f"{LABEL_POD_NAMESPACE}={namespace}"]})
            while True:
                if not await self.docker.containers.list(all="true", filters=filters):
                    return
                await asyncio.sleep(ENGINE_POLL)


async def _delete(
    client: Client, cls: type[Resource], names: list[str], namespace: str, **options: Any
) -> None:
    async def one(name: str) -> None:
        with contextlib.suppress(NotFound):
            await client.delete(cls, name, namespace, **options)

    await asyncio.gather(*(one(name) for name in names))


@contextlib.asynccontextmanager
async def deployment_round(
    client: Client, store: Store, docker: aiodocker.Docker, *, namespace: str, image: str, command: list[str]
) -> AsyncIterator[SteersmanDeployment]:
    """A fresh namespace watched from the start; the Deployment and its pods removed at the end."""
    await client.create(Namespace(metadata=ObjectMeta(name=namespace)))
    view = NamespaceView(store, namespace)
    # A task of its own rather than a TaskGroup, which would wrap the round's errors in a group.
    watching = asyncio.create_task(view.run())
    try:
        await view.synced()
        deployment = SteersmanDeployment(
            client, view, docker, deployment="sleepers", image=image, command=command
        )
        try:
            yield deployment
        finally:
            try:
                await deployment.remove()
            except (TimeoutError, SteerError) as err:  # the final clean-up removes the containers
                print(
                    f"warning: {namespace} not cleaned up: {err!r}; {deployment.describe()}", file=sys.stderr
                )
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
