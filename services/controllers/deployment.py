"""The Deployment controller: one ReplicaSet per pod template, rolled from old to new.

Each reconcile reads the Deployment and its ReplicaSets from the informer caches, claims
ReplicaSets by selector and ownerReference (as the ReplicaSet controller claims pods), makes sure
the ReplicaSet for the current template exists (named `<deployment>-<template hash>`), moves
replicas according to the strategy, prunes history and writes the status. Every write is an
absolute count and carries the resourceVersion of the object it was computed from, so a
reconcile that runs on a cache a moment stale gets a Conflict and runs again, rather than
overwriting a change it has not seen (a `steer scale`, another controller); the ReplicaSet
names are deterministic, so a duplicate create fails harmlessly.

Rollback is the client's job, as in kubectl: `steer rollout undo` copies an old ReplicaSet's
template back into the Deployment, and the controller then treats that ReplicaSet as the new one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

import msgspec

from bus import selectors
from bus.client import Client
from bus.controller import Result
from bus.errors import AlreadyExists, Conflict, NotFound
from bus.events import now
from bus.informer import Informer, key_of
from bus.meta import ConditionStatus, LabelSelector, ObjectMeta, Resource
from bus.recorder import Recorder
from bus.resources import Deployment, Pod, ReplicaSet
from bus.resources.apps import DeploymentCondition, DeploymentStatus, ReplicaSetSpec
from bus.workloads import CHANGE_CAUSE, REVISION, controller_of, controller_patch, controller_reference
from services.controllers import rollout
from services.controllers.replicaset import active

log = logging.getLogger(__name__)

COMPONENT = "deployment-controller"


def deployment_keys(replicasets: Informer[ReplicaSet]) -> Callable[[Resource], list[str]]:
    """Map a ReplicaSet, or a pod through its ReplicaSet, to the Deployment that owns it."""

    def keys(obj: Resource) -> list[str]:
        owner = controller_of(obj)
        namespace = obj.metadata.namespace
        if isinstance(obj, Pod):
            if owner is None or owner.kind != "ReplicaSet":
                return []
            rs = replicasets.get(f"{namespace}/{owner.name}")
            owner = controller_of(rs) if rs is not None else None
        if owner is None or owner.kind != "Deployment":
            return []
        return [f"{namespace}/{owner.name}"]

    return keys


def orphan_keys(deployments: Informer[Deployment]) -> Callable[[Resource], list[str]]:
    """A ReplicaSet without a controller: the Deployments that could adopt it."""

    def keys(obj: Resource) -> list[str]:
        if controller_of(obj) is not None:
            return []
        return [key_of(d) for d in deployments.in_namespace(obj.metadata.namespace) if _selects(d, obj)]

    return keys


def _selects(deployment: Deployment, obj: Resource) -> bool:
    return selectors.matches(selectors.from_label_selector(deployment.spec.selector), obj.metadata.labels)


ConditionValue = tuple[ConditionStatus, str, str]  # status, reason, message


def _condition(status: DeploymentStatus, type_: str) -> DeploymentCondition | None:
    return next((c for c in status.conditions if c.type == type_), None)


class DeploymentReconciler:
    def __init__(
        self,
        client: Client,
        deployments: Informer[Deployment],
        replicasets: Informer[ReplicaSet],
        pods: Informer[Pod],
    ) -> None:
        self.client = client
        self.deployments = deployments
        self.replicasets = replicasets
        self.pods = pods
        self.recorder = Recorder(client, component=COMPONENT)

    async def reconcile(self, key: str) -> Result:
        deployment = self.deployments.get(key)
        if deployment is None or deployment.metadata.deletion_timestamp is not None:
            return Result()
        owned = await self._claim(deployment)
        new = next((rs for rs in owned if rollout.same_template(rs, deployment)), None)
        olds = [rs for rs in owned if rs is not new]
        created = False
        if deployment.spec.paused:
            if new is not None and new.spec.replicas != deployment.spec.replicas and not _rolling(olds):
                await self._scale(deployment, new, deployment.spec.replicas)
        else:
            if new is None:
                new, created = await self._create_new(deployment, olds)
            else:
                new = await self._promote(deployment, new, olds)
            if deployment.spec.strategy.type == "Recreate":
                await self._recreate(deployment, new, olds)
            else:
                await self._roll(deployment, new, olds)
        every = [rs for rs in (new, *olds) if rs is not None]
        status = rollout.counts(deployment, new, every)
        if new is not None and not deployment.spec.paused and rollout.complete(deployment, status):
            await self._prune(deployment, olds)
        return await self._write_status(deployment, new, status, created=created)

    async def _claim(self, deployment: Deployment) -> list[ReplicaSet]:
        """The Deployment's ReplicaSets: owned ones that still match, plus matching orphans adopted."""
        namespace, uid = deployment.metadata.namespace, deployment.metadata.uid
        owned = []
        for rs in self.replicasets.in_namespace(namespace):
            if rs.metadata.deletion_timestamp is not None:
                continue
            ref = controller_of(rs)
            matches = _selects(deployment, rs)
            if ref is not None and ref.uid == uid:
                if matches:
                    owned.append(rs)
                else:
                    await self._set_owner(rs, None)
            elif ref is None and matches and await self._set_owner(rs, deployment):
                owned.append(rs)
        return owned

    async def _set_owner(self, rs: ReplicaSet, deployment: Deployment | None) -> bool:
        patch = controller_patch(rs, deployment)
        try:
            await self.client.patch(ReplicaSet, rs.metadata.name, patch, rs.metadata.namespace)
        except (Conflict, NotFound):
            return False  # changed meanwhile; the next reconcile sees it
        return True

    async def _create_new(self, deployment: Deployment, olds: list[ReplicaSet]) -> tuple[ReplicaSet, bool]:
        """The ReplicaSet for the current template; whether this call created it."""
        spec = deployment.spec
        template_hash = rollout.template_hash(spec.template, deployment.status.collision_count)
        labels = {**spec.template.metadata.labels, rollout.HASH_LABEL: template_hash}
        template = msgspec.structs.replace(
            spec.template, metadata=msgspec.structs.replace(spec.template.metadata, labels=labels)
        )
        selector = LabelSelector(
            match_labels={**spec.selector.match_labels, rollout.HASH_LABEL: template_hash},
            match_expressions=spec.selector.match_expressions,
        )
        annotations = {REVISION: str(max((rollout.revision(rs) for rs in olds), default=0) + 1)}
        if cause := deployment.metadata.annotations.get(CHANGE_CAUSE):
            annotations[CHANGE_CAUSE] = cause
        rs = ReplicaSet(
            metadata=ObjectMeta(
                name=f"{deployment.metadata.name}-{template_hash}",
                namespace=deployment.metadata.namespace,
                labels=labels,
                annotations=annotations,
                owner_references=[controller_reference(deployment)],
            ),
            spec=ReplicaSetSpec(
                selector=selector,
                template=template,
                replicas=_first_size(deployment, olds),
                min_ready_seconds=spec.min_ready_seconds,
            ),
        )
        try:
            created = await self.client.create(rs)
        except AlreadyExists:
            existing = await self.client.get(ReplicaSet, rs.metadata.name, rs.metadata.namespace)
            ref = controller_of(existing)
            if (
                ref is not None
                and ref.uid == deployment.metadata.uid
                and rollout.same_template(existing, deployment)
            ):
                return existing, False  # made by an earlier reconcile that the cache has not shown yet
            await self._bump_collisions(deployment)  # a different template took the name
            raise
        await self.recorder.normal(
            deployment,
            "ScalingReplicaSet",
            f"Scaled up replica set {created.metadata.name} to {created.spec.replicas}",
        )
        return created, True

    async def _bump_collisions(self, deployment: Deployment) -> None:
        status = msgspec.structs.replace(
            deployment.status, collision_count=deployment.status.collision_count + 1
        )
        with contextlib.suppress(NotFound):  # compare-and-set: a Conflict is retried from a fresh read
            await self.client.update_status(msgspec.structs.replace(deployment, status=status))

    async def _promote(self, deployment: Deployment, new: ReplicaSet, olds: list[ReplicaSet]) -> ReplicaSet:
        """Keep the new ReplicaSet's revision the newest (a rollback reuses an old ReplicaSet)."""
        newest = max((rollout.revision(rs) for rs in olds), default=0)
        annotations = dict(new.metadata.annotations)
        if rollout.revision(new) <= newest:
            annotations[REVISION] = str(newest + 1)
        if cause := deployment.metadata.annotations.get(CHANGE_CAUSE):
            annotations[CHANGE_CAUSE] = cause
        patch: dict[str, object] = {}
        if annotations != new.metadata.annotations:
            patch["metadata"] = {"annotations": annotations}
        if new.spec.min_ready_seconds != deployment.spec.min_ready_seconds:
            patch["spec"] = {"minReadySeconds": deployment.spec.min_ready_seconds}
        if not patch:
            return new
        patch = _on(new, patch)
        try:
            return await self.client.patch(ReplicaSet, new.metadata.name, patch, new.metadata.namespace)
        except NotFound:
            return new

    async def _roll(self, deployment: Deployment, new: ReplicaSet, olds: list[ReplicaSet]) -> None:
        target = rollout.rolled_up_target(deployment, new, [new, *olds])
        if target != new.spec.replicas:
            new = await self._scale(deployment, new, target)
        plan = rollout.scale_down_plan(deployment, new, olds)
        for rs in olds:
            if rs.metadata.name in plan:
                await self._scale(deployment, rs, plan[rs.metadata.name])

    async def _recreate(self, deployment: Deployment, new: ReplicaSet, olds: list[ReplicaSet]) -> None:
        """All old pods go first; the new ReplicaSet grows only when none is left running."""
        for rs in olds:
            if rs.spec.replicas:
                await self._scale(deployment, rs, 0)
        old_uids = {rs.metadata.uid for rs in olds}
        running = [
            pod
            for pod in self.pods.in_namespace(deployment.metadata.namespace)
            if (ref := controller_of(pod)) is not None
            and ref.uid in old_uids
            and pod.status.phase not in ("Succeeded", "Failed")
        ]
        if not running and new.spec.replicas != deployment.spec.replicas:
            await self._scale(deployment, new, deployment.spec.replicas)

    async def _scale(self, deployment: Deployment, rs: ReplicaSet, replicas: int) -> ReplicaSet:
        try:
            scaled = await self.client.patch(
                ReplicaSet, rs.metadata.name, _on(rs, {"spec": {"replicas": replicas}}), rs.metadata.namespace
            )
        except NotFound:
            return rs
        direction = "up" if replicas > rs.spec.replicas else "down"
        await self.recorder.normal(
            deployment,
            "ScalingReplicaSet",
            f"Scaled {direction} replica set {rs.metadata.name} from {rs.spec.replicas} to {replicas}",
        )
        return scaled

    async def _prune(self, deployment: Deployment, olds: list[ReplicaSet]) -> None:
        """Delete the oldest empty ReplicaSets beyond revisionHistoryLimit."""
        empty = [rs for rs in olds if rs.spec.replicas == 0 and rs.status.replicas == 0]
        excess = len(empty) - deployment.spec.revision_history_limit
        for rs in sorted(empty, key=rollout.revision)[: max(excess, 0)]:
            if any(active(p) and _owned_by(p, rs) for p in self.pods.in_namespace(rs.metadata.namespace)):
                continue  # its last pods are still going
            # On the version judged empty: one scaled up meanwhile (a rollback) is a Conflict.
            with contextlib.suppress(NotFound):
                await self.client.delete(
                    ReplicaSet,
                    rs.metadata.name,
                    rs.metadata.namespace,
                    resource_version=rs.metadata.resource_version,
                )

    async def _write_status(
        self, deployment: Deployment, new: ReplicaSet | None, status: DeploymentStatus, *, created: bool
    ) -> Result:
        moment = now()
        status.conditions = _conditions(deployment, new, status, created=created, moment=moment)
        revision_patch = None
        if (
            new is not None
            and rollout.revision(new)
            and rollout.revision(deployment) != rollout.revision(new)
        ):
            revision_patch = _on(
                deployment, {"metadata": {"annotations": {REVISION: str(rollout.revision(new))}}}
            )
        # Compare-and-set on the version judged: if the Deployment changed meanwhile (a scale, a
        # new template), the Conflict makes the reconcile run again on the new version.
        with contextlib.suppress(NotFound):
            if revision_patch:
                deployment = await self.client.patch(
                    Deployment, deployment.metadata.name, revision_patch, deployment.metadata.namespace
                )
            if status != deployment.status:
                await self.client.update_status(msgspec.structs.replace(deployment, status=status))
        progressing = _condition(status, "Progressing")
        if deployment.spec.paused or rollout.complete(deployment, status) or progressing is None:
            return Result()
        if progressing.reason == "ProgressDeadlineExceeded":
            return Result()
        left = rollout.deadline_left(deployment, progressing.last_update_time, moment)
        return Result(requeue_after=max(left, 0.0) + 0.1)


def _on(obj: Resource, patch: dict[str, object]) -> dict[str, object]:
    """`patch` made conditional on the version of `obj` it was computed from: the API answers
    Conflict if the object changed since (a `steer scale`, another controller), and the
    reconcile runs again on what is there now, rather than overwriting it."""
    metadata = dict(patch.get("metadata") or {})  # type: ignore[call-overload]
    metadata["resourceVersion"] = obj.metadata.resource_version
    return {**patch, "metadata": metadata}


def _rolling(olds: list[ReplicaSet]) -> bool:
    return any(rs.spec.replicas for rs in olds)


def _owned_by(pod: Pod, rs: ReplicaSet) -> bool:
    ref = controller_of(pod)
    return ref is not None and ref.uid == rs.metadata.uid


def _first_size(deployment: Deployment, olds: list[ReplicaSet]) -> int:
    """A new ReplicaSet starts with every replica when nothing older runs, else with what the
    strategy allows: the surge for RollingUpdate, nothing for Recreate (it waits for the old pods)."""
    wanted = deployment.spec.replicas
    old_total = sum(rs.spec.replicas for rs in olds)
    if old_total == 0:
        return wanted
    if deployment.spec.strategy.type == "Recreate":
        return 0
    surge, _ = rollout.surge_and_unavailable(deployment)
    return max(min(wanted + surge - old_total, wanted), 0)


def _conditions(
    deployment: Deployment,
    new: ReplicaSet | None,
    status: DeploymentStatus,
    *,
    created: bool,
    moment: datetime,
) -> list[DeploymentCondition]:
    """Available and Progressing, as Kubernetes reports them."""
    before = deployment.status
    _, max_unavailable = rollout.surge_and_unavailable(deployment)
    available: ConditionValue
    progressing: ConditionValue
    if status.available_replicas >= deployment.spec.replicas - max_unavailable:
        available = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    else:
        available = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
    name = new.metadata.name if new else ""
    current = _condition(before, "Progressing")
    moved = (
        created
        or rollout.progressed(before, status)
        or before.observed_generation < status.observed_generation
    )
    if deployment.spec.paused:
        progressing = ("Unknown", "DeploymentPaused", "Deployment is paused")
    elif current is not None and current.reason == "DeploymentPaused":
        progressing = ("Unknown", "DeploymentResumed", "Deployment is resumed")
    elif rollout.complete(deployment, status):
        progressing = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{name}" has successfully progressed.')
    elif created:
        progressing = ("True", "NewReplicaSetCreated", f'Created new replica set "{name}"')
    elif current is None or moved:
        progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.')
    elif current.reason == "ProgressDeadlineExceeded" or (
        rollout.deadline_left(deployment, current.last_update_time, moment) <= 0
    ):
        progressing = ("False", "ProgressDeadlineExceeded", f'ReplicaSet "{name}" has timed out progressing.')
    else:
        progressing = (current.status, current.reason, current.message)  # no progress: the clock runs on
    return [
        _updated(_condition(before, "Available"), "Available", available, moment),
        _updated(current, "Progressing", progressing, moment, touch=moved),
    ]


def _updated(
    current: DeploymentCondition | None,
    type_: str,
    value: ConditionValue,
    moment: datetime,
    *,
    touch: bool = False,
) -> DeploymentCondition:
    """The condition set to `value`; its lastUpdateTime moves on a change, or when `touch`ed
    (progress was seen: the progress deadline counts from there)."""
    status, reason, message = value
    if current is not None and (current.status, current.reason, current.message) == value and not touch:
        return current
    transitioned = current is None or current.status != status
    return DeploymentCondition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_update_time=moment,
        last_transition_time=moment if transitioned else current.last_transition_time,  # type: ignore[union-attr]
    )
