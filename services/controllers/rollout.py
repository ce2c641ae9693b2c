"""The arithmetic of a Deployment rollout, kept pure so that it can be read and tested alone.

It follows Kubernetes' deployment controller (pkg/controller/deployment): ReplicaSets named by a
hash of the pod template, surge rounded up and unavailability rounded down, old ReplicaSets scaled
down only as far as availability allows, and progress judged by how the counts move.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import datetime

import msgspec

from bus.resources import Deployment, ReplicaSet
from bus.resources.apps import DeploymentStatus
from bus.resources.pod import IntOrString, PodTemplateSpec
from bus.workloads import HASH_LABEL, revision, without_hash

__all__ = ["HASH_LABEL", "revision", "without_hash"]  # re-exported for the controllers

# Kubernetes' alphabet for generated names: no vowels (no words) and no look-alike characters.
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: PodTemplateSpec, collision_count: int = 0) -> str:
    """A short, stable name suffix for a pod template (the label `pod-template-hash`)."""
    canonical = msgspec.json.encode(msgspec.to_builtins(template), order="sorted")
    digest = hashlib.sha256(canonical + str(collision_count).encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(10):
        number, index = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[index])
    return "".join(chars)


def same_template(rs: ReplicaSet, deployment: Deployment) -> bool:
    """Whether `rs` runs the Deployment's current template (the hash label aside)."""
    return without_hash(rs.spec.template) == without_hash(deployment.spec.template)


def _scaled(value: IntOrString, total: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    fraction = int(value.rstrip("%")) * total / 100
    return math.ceil(fraction) if round_up else math.floor(fraction)


def surge_and_unavailable(deployment: Deployment) -> tuple[int, int]:
    """maxSurge (rounded up) and maxUnavailable (rounded down); never both zero."""
    spec = deployment.spec
    if spec.strategy.type == "Recreate":
        return 0, spec.replicas
    rolling = spec.strategy.rolling_update
    surge = _scaled(rolling.max_surge if rolling else "25%", spec.replicas, round_up=True)
    unavailable = _scaled(rolling.max_unavailable if rolling else "25%", spec.replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # a rollout must be able to move
    return surge, min(unavailable, spec.replicas)


def rolled_up_target(deployment: Deployment, new: ReplicaSet, every: Sequence[ReplicaSet]) -> int:
    """How many replicas the new ReplicaSet may have now: as many as the surge allows."""
    wanted = deployment.spec.replicas
    if new.spec.replicas >= wanted:
        return wanted
    surge, _ = surge_and_unavailable(deployment)
    room = wanted + surge - sum(rs.spec.replicas for rs in every)
    if room <= 0:
        return new.spec.replicas
    return new.spec.replicas + min(room, wanted - new.spec.replicas)


def scale_down_plan(deployment: Deployment, new: ReplicaSet, olds: Sequence[ReplicaSet]) -> dict[str, int]:
    """New replica counts for old ReplicaSets, keeping at least replicas - maxUnavailable available.

    First the old replicas that are not available go (they serve nobody), then available ones,
    oldest ReplicaSet first, as far as the availability budget allows.
    """
    _, max_unavailable = surge_and_unavailable(deployment)
    min_available = deployment.spec.replicas - max_unavailable
    every = [new, *olds]
    total = sum(rs.spec.replicas for rs in every)
    new_unavailable = max(new.spec.replicas - new.status.available_replicas, 0)
    budget = total - min_available - new_unavailable
    plan = {rs.metadata.name: rs.spec.replicas for rs in olds}
    if budget <= 0:
        return {}
    ordered = sorted(olds, key=_age)
    for rs in ordered:  # unhealthy replicas first: removing them costs no availability
        if budget <= 0:
            break
        unhealthy = max(plan[rs.metadata.name] - rs.status.available_replicas, 0)
        cut = min(unhealthy, budget)
        plan[rs.metadata.name] -= cut
        budget -= cut
    available = sum(rs.status.available_replicas for rs in every)
    room = available - min_available
    for rs in ordered:
        if room <= 0:
            break
        cut = min(plan[rs.metadata.name], room, rs.status.available_replicas)
        plan[rs.metadata.name] -= cut
        room -= cut
    return {name: count for name, count in plan.items() if count != _replicas_of(olds, name)}


def _replicas_of(replicasets: Sequence[ReplicaSet], name: str) -> int:
    return next(rs.spec.replicas for rs in replicasets if rs.metadata.name == name)


def _age(rs: ReplicaSet) -> tuple[float, str]:
    created = rs.metadata.creation_timestamp
    return (created.timestamp() if created else 0.0, rs.metadata.name)


def counts(deployment: Deployment, new: ReplicaSet | None, every: Sequence[ReplicaSet]) -> DeploymentStatus:
    """The replica counts of a Deployment's status (conditions are set separately)."""
    available = sum(rs.status.available_replicas for rs in every)
    return DeploymentStatus(
        observed_generation=deployment.metadata.generation,
        replicas=sum(rs.status.replicas for rs in every),
        updated_replicas=new.status.replicas if new else 0,
        ready_replicas=sum(rs.status.ready_replicas for rs in every),
        available_replicas=available,
        unavailable_replicas=max(deployment.spec.replicas - available, 0),
        collision_count=deployment.status.collision_count,
    )


def complete(deployment: Deployment, status: DeploymentStatus) -> bool:
    """Every replica updated and available, and no old replica left."""
    wanted = deployment.spec.replicas
    return (
        status.updated_replicas == wanted
        and status.replicas == wanted
        and status.available_replicas == wanted
        and status.observed_generation >= deployment.metadata.generation
    )


def progressed(before: DeploymentStatus, after: DeploymentStatus) -> bool:
    """Kubernetes' test for progress: more updated, ready or available replicas, or fewer old ones."""
    return (
        after.updated_replicas > before.updated_replicas
        or after.ready_replicas > before.ready_replicas
        or after.available_replicas > before.available_replicas
        or after.replicas - after.updated_replicas < before.replicas - before.updated_replicas
    )


def deadline_left(deployment: Deployment, last_progress: datetime | None, now: datetime) -> float:
    """Seconds until the progress deadline passes (negative once it has)."""
    if last_progress is None:
        return float(deployment.spec.progress_deadline_seconds)
    return deployment.spec.progress_deadline_seconds - (now - last_progress).total_seconds()
