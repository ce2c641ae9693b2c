"""The ReplicaSet controller: keeps `spec.replicas` pods matching the selector.

Level-based: each reconcile reads the ReplicaSet and its pods from the shared informers (listing
the pods through the API on every reconcile was a third of the API server's work at a hundred
pods). Expectations (bus/expectations.py) keep a reconcile that runs before the
informer has seen the last one's creations and deletions from acting on stale counts: it then
writes only the status, and the events it waits for bring the ReplicaSet back. Pods carry an
ownerReference to their ReplicaSet. A matching pod without a controller is adopted; an owned pod
whose labels stop matching is released. Failed pods are deleted and replaced. When there are too
many, the least advanced go first (unscheduled, then not running, then not ready, then the
youngest).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from bus import selectors
from bus.client import Client
from bus.controller import Controller, Result, all_of
from bus.errors import Conflict, NotFound, SteerError
from bus.events import now
from bus.expectations import Expectations
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


def owner_key(pod: Resource) -> str | None:
    """The key of the ReplicaSet controlling a pod, if one does."""
    ref = controller_of(pod)
    return f"{pod.metadata.namespace}/{ref.name}" if ref is not None and ref.kind == "ReplicaSet" else None


def owner_keys(replicasets: Informer[ReplicaSet]) -> Callable[[Resource], list[str]]:
    """Map a pod to the ReplicaSets that own it or could adopt it."""

    def keys(obj: Resource) -> list[str]:
        assert isinstance(obj, Pod)
        if controller_of(obj) is not None:
            owner = owner_key(obj)
            return [owner] if owner is not None else []
        return [
            key_of(rs)
            for rs in replicasets.in_namespace(obj.metadata.namespace)
            if selectors.matches(selectors.from_label_selector(rs.spec.selector), obj.metadata.labels)
        ]

    return keys


class ReplicaSetReconciler:
    def __init__(self, client: Client, replicasets: Informer[ReplicaSet], pods: Informer[Pod]) -> None:
        self.client = client
        self.replicasets = replicasets
        self.pods = pods
        self.expectations = Expectations()
        pods.on_change(self.expectations.observe(owner_key))
        self.recorder = Recorder(client, component=COMPONENT)

    async def reconcile(self, key: str) -> Result:
        # The cached ReplicaSet, as Kubernetes' controller reads it: a spec the cache has not
        # caught up with yet is acted on when its change arrives (the change brings us back).
        rs = self.replicasets.get(key)
        if rs is None or rs.metadata.deletion_timestamp is not None:
            self.expectations.forget(key)
            return Result()
        namespace = rs.metadata.namespace
        selector = selectors.from_label_selector(rs.spec.selector)
        owned: list[Pod] = []
        settled = True  # every adoption and release went through
        for pod in self.pods.in_namespace(namespace):
            ref = controller_of(pod)
            matches = selectors.matches(selector, pod.metadata.labels)
            if ref is not None and ref.uid == rs.metadata.uid:
                if matches:
                    owned.append(pod)
                else:
                    settled &= await self._set_owner(pod, None)  # labels changed: release it
            elif ref is None and matches and pod.metadata.deletion_timestamp is None:
                if await self._set_owner(pod, rs):
                    owned.append(pod)
                else:
                    settled = False  # e.g. adopted by us already, and the cache is behind
        for pod in owned:
            if pod.status.phase == "Failed" and pod.metadata.deletion_timestamp is None:
                await self._delete(pod)  # replaced below, as it no longer counts
        live = [p for p in owned if active(p)]
        diff = rs.spec.replicas - len(live)
        if diff and settled and self.expectations.satisfied(key):
            await self._manage(key, rs, live, diff)
        pending = await self._write_status(rs, live)
        if abs(diff) > BURST:
            return Result(requeue_after=1.0)
        return Result(requeue_after=pending + 0.05) if pending is not None else Result()

    async def _manage(self, key: str, rs: ReplicaSet, live: list[Pod], diff: int) -> None:
        """Create or delete up to BURST pods, expecting to see each of them come or go."""
        if diff > 0:
            count = min(diff, BURST)
            self.expectations.expect(key, creations=count)
            await all_of([self._create(key, rs) for _ in range(count)])
        else:
            extra = sorted(live, key=deletion_rank)[: min(-diff, BURST)]
            self.expectations.expect(key, deletions=[key_of(p) for p in extra])
            await all_of([self._delete(p, key) for p in extra])
        verb = "Created" if diff > 0 else "Deleted"
        await self.recorder.normal(
            rs, f"Successful{'Create' if diff > 0 else 'Delete'}", f"{verb} {abs(diff)} pod(s)"
        )

    async def _set_owner(self, pod: Pod, rs: ReplicaSet | None) -> bool:
        patch = controller_patch(pod, rs)
        try:
            await self.client.patch(Pod, pod.metadata.name, patch, pod.metadata.namespace)
        except (Conflict, NotFound):
            return False  # changed meanwhile; the next reconcile sees it
        return True

    async def _create(self, key: str, rs: ReplicaSet) -> None:
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
            self.expectations.created(key)  # never to be seen
            await self.recorder.warning(rs, "FailedCreate", f"Error creating: {err.message}")
            raise

    async def _delete(self, pod: Pod, key: str | None = None) -> None:
        try:
            await self.client.delete(Pod, pod.metadata.name, pod.metadata.namespace)
        except NotFound:
            pass  # gone already: what we wanted
        except SteerError:
            if key is not None:
                self.expectations.deleted(key, key_of(pod))  # never to be seen
            raise

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
            # Compare-and-set on the cached version the counts were judged against: a Conflict
            # runs the reconcile again on the newer one. Deleted meanwhile: no status to write.
            with contextlib.suppress(NotFound):
                await self.client.update_status(ReplicaSet(metadata=rs.metadata, spec=rs.spec, status=status))
        return min(pending) if pending else None


def replicaset_controller(
    client: Client, replicasets: Informer[ReplicaSet], pods: Informer[Pod], *, workers: int
) -> Controller:
    """The ReplicaSet controller, reconciling on changes to ReplicaSets and to their pods."""
    controller = Controller("replicaset", ReplicaSetReconciler(client, replicasets, pods), workers=workers)
    controller.watch(replicasets)
    controller.watch(pods, owner_keys(replicasets))
    return controller
