"""The ReplicaSet controller: keeps `spec.replicas` pods matching the selector.

Level-based: each reconcile lists the namespace's pods from the store (not the event that
triggered it), so two quick reconciles never create the same missing pod twice from a stale
cache. Pods carry an ownerReference to their ReplicaSet. A matching pod without a controller is
adopted; an owned pod whose labels stop matching is released. Failed pods are deleted and
replaced. When there are too many, the least advanced go first (unscheduled, then not running,
then not ready, then the youngest).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from bus import selectors
from bus.client import Client
from bus.controller import Result
from bus.errors import Conflict, NotFound, SteerError
from bus.events import now
from bus.informer import Informer, key_of
from bus.meta import ObjectMeta, Resource, is_true
from bus.recorder import Recorder
from bus.resources import Pod, ReplicaSet
from bus.resources.apps import ReplicaSetStatus
from bus.workloads import controller_of, controller_patch, controller_reference

log = logging.getLogger(__name__)

COMPONENT = "replicaset-controller"
BURST = 100  # pods created or deleted at once, as Kubernetes' slow-start batches


def active(pod: Pod) -> bool:
    return pod.metadata.deletion_timestamp is None and pod.status.phase not in ("Succeeded", "Failed")


def ready(pod: Pod) -> bool:
    return is_true(pod.status.conditions)


def ready_since(pod: Pod) -> datetime | None:
    """When the pod last became ready (None when it is not ready)."""
    for condition in pod.status.conditions:
        if condition.type == "Ready" and condition.status == "True":
            return condition.last_transition_time or datetime.min.replace(tzinfo=UTC)
    return None


def available_in(pod: Pod, min_ready_seconds: int, moment: datetime) -> float | None:
    """Seconds until a pod counts as available (ready for minReadySeconds): 0 if it is, None if not ready."""
    since = ready_since(pod)
    if since is None:
        return None
    return max(min_ready_seconds - (moment - since).total_seconds(), 0.0)


def deletion_rank(pod: Pod) -> tuple[int, int, int, float]:
    """Lower first: unscheduled, pending, not ready, then the youngest."""
    created = pod.metadata.creation_timestamp.timestamp() if pod.metadata.creation_timestamp else 0.0
    return (
        1 if pod.spec.node_name else 0,
        1 if pod.status.phase == "Running" else 0,
        1 if ready(pod) else 0,
        -created,
    )


def owner_keys(replicasets: Informer[ReplicaSet]) -> Callable[[Resource], list[str]]:
    """Map a pod to the ReplicaSets that own it or could adopt it."""

    def keys(obj: Resource) -> list[str]:
        assert isinstance(obj, Pod)
        ref = controller_of(obj)
        if ref is not None:
            return [f"{obj.metadata.namespace}/{ref.name}"] if ref.kind == "ReplicaSet" else []
        return [
            key_of(rs)
            for rs in replicasets.items()
            if rs.metadata.namespace == obj.metadata.namespace
            and selectors.matches(selectors.from_label_selector(rs.spec.selector), obj.metadata.labels)
        ]

    return keys


class ReplicaSetReconciler:
    def __init__(self, client: Client, replicasets: Informer[ReplicaSet]) -> None:
        self.client = client
        self.replicasets = replicasets
        self.recorder = Recorder(client, component=COMPONENT)

    async def reconcile(self, key: str) -> Result:
        cached = self.replicasets.get(key)
        if cached is None or cached.metadata.deletion_timestamp is not None:
            return Result()
        namespace, name = cached.metadata.namespace, cached.metadata.name
        try:
            rs = await self.client.get(ReplicaSet, name, namespace)
        except NotFound:
            return Result()
        if rs.metadata.deletion_timestamp is not None:
            return Result()  # being deleted (the cache lagged): no new pods for it
        selector = selectors.from_label_selector(rs.spec.selector)
        pods = await self.client.list(Pod, namespace)
        owned: list[Pod] = []
        for pod in pods:
            ref = controller_of(pod)
            matches = selectors.matches(selector, pod.metadata.labels)
            if ref is not None and ref.uid == rs.metadata.uid:
                if matches:
                    owned.append(pod)
                else:
                    await self._set_owner(pod, None)  # labels changed: release it
            elif ref is None and matches and pod.metadata.deletion_timestamp is None:
                if await self._set_owner(pod, rs):
                    owned.append(pod)
        for pod in owned:
            if pod.status.phase == "Failed" and pod.metadata.deletion_timestamp is None:
                await self._delete(pod)  # replaced below, as it no longer counts
        live = [p for p in owned if active(p)]
        diff = rs.spec.replicas - len(live)
        if diff > 0:
            await asyncio.gather(*(self._create(rs) for _ in range(min(diff, BURST))))
        elif diff < 0:
            extra = sorted(live, key=deletion_rank)[: min(-diff, BURST)]
            await asyncio.gather(*(self._delete(p) for p in extra))
        if diff:
            verb = "Created" if diff > 0 else "Deleted"
            await self.recorder.normal(
                rs, f"Successful{'Create' if diff > 0 else 'Delete'}", f"{verb} {abs(diff)} pod(s)"
            )
        pending = await self._write_status(rs, live)
        if abs(diff) > BURST:
            return Result(requeue_after=1.0)
        return Result(requeue_after=pending + 0.05) if pending is not None else Result()

    async def _set_owner(self, pod: Pod, rs: ReplicaSet | None) -> bool:
        patch = controller_patch(pod, rs)
        try:
            await self.client.patch(Pod, pod.metadata.name, patch, pod.metadata.namespace)
        except (Conflict, NotFound):
            return False  # changed meanwhile; the next reconcile sees it
        return True

    async def _create(self, rs: ReplicaSet) -> None:
        template = rs.spec.template
        assert template.spec is not None
        owner = controller_reference(rs)
        meta = ObjectMeta(
            generate_name=f"{rs.metadata.name}-",
            namespace=rs.metadata.namespace,
            labels=dict(template.metadata.labels),
            annotations=dict(template.metadata.annotations),
            owner_references=[owner],
        )
        try:
            await self.client.create(Pod(metadata=meta, spec=template.spec))
        except SteerError as err:
            await self.recorder.warning(rs, "FailedCreate", f"Error creating: {err.message}")
            raise

    async def _delete(self, pod: Pod) -> None:
        with contextlib.suppress(NotFound):  # gone already: what we wanted
            await self.client.delete(Pod, pod.metadata.name, pod.metadata.namespace)

    async def _write_status(self, rs: ReplicaSet, live: list[Pod]) -> float | None:
        """Write the counts; seconds until a ready pod becomes available, if one is waiting."""
        labels = rs.spec.template.metadata.labels
        moment = now()
        waits = [available_in(p, rs.spec.min_ready_seconds, moment) for p in live]
        pending = [w for w in waits if w]
        status = ReplicaSetStatus(
            replicas=len(live),
            fully_labeled_replicas=sum(
                1 for p in live if all(p.metadata.labels.get(k) == v for k, v in labels.items())
            ),
            ready_replicas=sum(1 for p in live if ready(p)),
            available_replicas=sum(1 for w in waits if w == 0),
            observed_generation=rs.metadata.generation,
            conditions=rs.status.conditions,
        )
        if status != rs.status:
            with contextlib.suppress(NotFound):  # deleted meanwhile: no status to write
                await self.client.write_status(ReplicaSet(metadata=rs.metadata, spec=rs.spec, status=status))
        return min(pending) if pending else None
