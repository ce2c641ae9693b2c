"""What workload controllers and their clients (the CLI, users' controllers) agree on: the
annotations and labels of a rollout's history, and who controls an object.

The names are Kubernetes' own, so that manifests and habits carry over.
"""

from __future__ import annotations

from typing import Any

import msgspec

from bus.meta import OwnerReference, Resource
from bus.resources.pod import PodTemplateSpec

HASH_LABEL = "pod-template-hash"  # on a Deployment's ReplicaSets and their pods
REVISION = "deployment.kubernetes.io/revision"  # on a Deployment and each of its ReplicaSets
CHANGE_CAUSE = "kubernetes.io/change-cause"  # copied from a Deployment to the ReplicaSet it creates
RESTARTED_AT = "steersman.io/restartedAt"  # set on a pod template by `steer rollout restart`


def controller_of(obj: Resource) -> OwnerReference | None:
    """The ownerReference of the object's managing controller, if it has one."""
    return next((ref for ref in obj.metadata.owner_references if ref.controller), None)


def controller_reference(owner: Resource) -> OwnerReference:
    """The ownerReference a controller puts on the objects it manages (blocking foreground deletion)."""
    return OwnerReference(
        api_version=owner.api_version,
        kind=owner.kind,
        name=owner.metadata.name,
        uid=owner.metadata.uid,
        controller=True,
        block_owner_deletion=True,
    )


def controller_patch(obj: Resource, owner: Resource | None) -> dict[str, Any]:
    """A merge patch that makes `owner` the object's controller (adopt), or none (release).

    It carries the object's resourceVersion: adoption is compare-and-set, so an object that
    changed meanwhile (another controller adopted it, its labels moved) is left to the next look."""
    refs = [r for r in obj.metadata.owner_references if not r.controller]
    if owner is not None:
        refs.append(controller_reference(owner))
    return {
        "metadata": {
            "resourceVersion": obj.metadata.resource_version,
            "ownerReferences": [msgspec.to_builtins(r) for r in refs] or None,
        }
    }


def revision(obj: Resource) -> int:
    """The rollout revision recorded on a Deployment or ReplicaSet (0 when none)."""
    try:
        return int(obj.metadata.annotations.get(REVISION, "0"))
    except ValueError:
        return 0


def without_hash(template: PodTemplateSpec) -> PodTemplateSpec:
    """A ReplicaSet's pod template as its Deployment declared it (the hash label removed)."""
    labels = {k: v for k, v in template.metadata.labels.items() if k != HASH_LABEL}
    return msgspec.structs.replace(
        template, metadata=msgspec.structs.replace(template.metadata, labels=labels)
    )
