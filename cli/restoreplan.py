"""In which order `steer restore` recreates objects, and how each is adjusted on the way.

The API gives every created object a new uid (and resourceVersion, generation and
creationTimestamp): a restore cannot bring back the old ones as an etcd snapshot would. What
refers to a uid must follow: an ownerReference names its owner by uid, and the garbage
collector removes a dependent whose owner's uid is gone. So owners are created before their
dependents, and each dependent's ownerReferences are rewritten to its owner's new uid.
"""

from __future__ import annotations

import msgspec

from bus import kinds
from bus.meta import Resource

_KIND_ORDER = {info.kind: index for index, info in enumerate(kinds.KINDS)}


def order(objects: list[Resource]) -> list[Resource]:
    """Namespaces first (everything else lives in one), then other cluster-scoped objects, then
    the rest with every owner in the backup before its dependents (deployments, then their
    replica sets, then their pods), stable by kind, namespace and name otherwise."""
    by_uid = {obj.metadata.uid: obj for obj in objects if obj.metadata.uid}
    depths: dict[str, int] = {}

    def depth(obj: Resource, visiting: frozenset[str] = frozenset()) -> int:
        uid = obj.metadata.uid
        if uid in depths:
            return depths[uid]
        owners = [
            by_uid[ref.uid]
            for ref in obj.metadata.owner_references
            if ref.uid in by_uid and ref.uid not in visiting and ref.uid != uid
        ]
        found = 1 + max((depth(owner, visiting | {uid}) for owner in owners), default=-1)
        if uid:
            depths[uid] = found
        return found

    def rank(obj: Resource) -> tuple[int, int, int, str, str]:
        info = kinds.of(obj)
        scope = 0 if info.kind == "Namespace" else 1 if not info.namespaced else 2
        kind = _KIND_ORDER.get(info.kind, len(_KIND_ORDER))
        return (scope, depth(obj), kind, obj.metadata.namespace, obj.metadata.name)

    return sorted(objects, key=rank)


def for_create(obj: Resource, new_uids: dict[str, str]) -> Resource:
    """`obj` as it is sent to be created: owner uids mapped to the owners' new ones (an owner not
    restored keeps its old uid, as the dependent had it), server-set metadata left to the API."""
    refs = [
        msgspec.structs.replace(ref, uid=new_uids.get(ref.uid, ref.uid))
        for ref in obj.metadata.owner_references
    ]
    metadata = msgspec.structs.replace(obj.metadata, owner_references=refs, resource_version="")
    return msgspec.structs.replace(obj, metadata=metadata)


def status_to_restore(obj: Resource, stored: Resource) -> Resource | None:
    """The object to send with the status verb after `stored` was created from `obj`, or None
    when there is nothing to restore (no status, or the API kept it on create, as for Nodes).

    `observedGeneration` is relative to a generation the API has just restarted at 1: a status
    that had seen its object's latest spec says so of the new generation, and one that had not
    says it has seen nothing yet, so a controller (and `steer rollout status`) still acts on it.
    """
    status = getattr(obj, "status", None)
    if status is None or status == getattr(stored, "status", None) or status == type(status)():
        return None
    if hasattr(status, "observed_generation") and status.observed_generation:
        seen_latest = status.observed_generation >= obj.metadata.generation
        status = msgspec.structs.replace(
            status, observed_generation=stored.metadata.generation if seen_latest else 0
        )
    return msgspec.structs.replace(stored, status=status)
