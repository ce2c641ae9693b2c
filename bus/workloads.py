"""What workload controllers and their clients (the CLI, users' controllers) agree on: the
annotations and labels of a rollout's history, and who controls an object.

The names are Kubernetes' own, so that manifests and habits carry over.
"""

from __future__ import annotations

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
