"""The garbage collector: objects whose owners are gone go too, as in Kubernetes.

An object names its owners in `metadata.ownerReferences` (by uid). How an owner's deletion
reaches its dependents is the `propagationPolicy` of the delete:

- **Background** (the default): the API removes the owner at once. Its dependents are then
  dangling and are deleted here (pods gracefully); a dependent that still has another owner only
  loses the dangling reference.
- **Foreground**: the API marks the owner (deletionTimestamp) with the `foregroundDeletion`
  finalizer. Its dependents are deleted (in the foreground too when they have dependents of their
  own, so a chain unwinds from the bottom); those with `blockOwnerDeletion` hold the owner until
  they are really gone (a pod stopping on its node counts), then the finalizer is removed and the
  API removes the owner.
- **Orphan**: the API marks the owner with the `orphan` finalizer; the references to it are
  removed from its dependents, then the finalizer.

One reconciler watches every kind (each key is `Kind/namespace/name`), with an index from owner
uid to dependents. The caches decide what to look at; whatever is destroyed is first confirmed by
a live read of the owner through the API, since one kind's informer may lag behind another's (a
pod seen before the ReplicaSet that created it). Events are left alone, as Kubernetes does: they
are many, nobody owns them, and they expire.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from bus import kinds, subjects
from bus.client import Client
from bus.codec import to_builtins
from bus.controller import Controller, Result
from bus.errors import Conflict, NotFound
from bus.informer import Change, Informer, key_of
from bus.meta import ObjectMeta, OwnerReference, Resource
from bus.protocol import FOREGROUND_FINALIZER, ORPHAN_FINALIZER, PropagationPolicy
from bus.store import Store

log = logging.getLogger(__name__)

IGNORED_KINDS = frozenset({"Event"})
ABSENT_MEMORY = 1000  # owner uids known to be gone (a uid is never reused, so this never lies)
CONFLICT_RETRIES = 5

OwnerState = Literal["solid", "dangling", "waiting"]
MetaChange = Callable[[ObjectMeta], dict[str, Any] | None]


def gc_key(obj: Resource) -> str:
    return f"{obj.kind}/{key_of(obj)}"


def finalizing(obj: Resource, finalizer: str) -> bool:
    return obj.metadata.deletion_timestamp is not None and finalizer in obj.metadata.finalizers


def owner_kind(ref: OwnerReference) -> kinds.KindInfo | None:
    """The kind a reference names, if we collect it (matched by kind and API group)."""
    info = kinds.BY_KIND.get(ref.kind)
    if info is None or info.kind in IGNORED_KINDS or ref.api_version.rpartition("/")[0] != info.group:
        return None
    return info


def without_finalizer(finalizer: str) -> MetaChange:
    def change(meta: ObjectMeta) -> dict[str, Any] | None:
        if finalizer not in meta.finalizers:
            return None
        return {"finalizers": [f for f in meta.finalizers if f != finalizer] or None}

    return change


def without_owners(uids: Iterable[str]) -> MetaChange:
    gone = set(uids)

    def change(meta: ObjectMeta) -> dict[str, Any] | None:
        refs = [r for r in meta.owner_references if r.uid not in gone]
        if len(refs) == len(meta.owner_references):
            return None
        return {"ownerReferences": [to_builtins(r) for r in refs] or None}

    return change


def collected_informers(store: Store, shared: Iterable[Informer[Any]] = ()) -> dict[str, Informer[Any]]:
    """One informer over every namespace for each kind collected, reusing `shared` ones that fit."""
    reusable = {i.cls.__name__: i for i in shared if i.namespace == subjects.ALL}
    return {
        info.kind: reusable.get(info.kind) or Informer(store, info.type)
        for info in kinds.KINDS
        if info.kind not in IGNORED_KINDS
    }


class GarbageCollector:
    def __init__(self, client: Client, informers: Mapping[str, Informer[Any]]) -> None:
        self.client = client
        self.informers = informers
        self._dependents: defaultdict[str, set[str]] = defaultdict(set)  # owner uid -> dependent keys
        self._absent: OrderedDict[str, None] = OrderedDict()
        for informer in informers.values():
            informer.on_change(self._index)

    # -- the index and the keys to reconcile (informer handlers: quick, never blocking)

    def _index(self, change: Change, old: Resource | None, new: Resource | None) -> None:
        for obj, add in ((old, False), (new, True)):
            if obj is None:
                continue
            key = gc_key(obj)
            for ref in obj.metadata.owner_references:
                if add:
                    self._dependents[ref.uid].add(key)
                elif (dependents := self._dependents.get(ref.uid)) is not None:
                    dependents.discard(key)
                    if not dependents:
                        del self._dependents[ref.uid]

    def keys(self, obj: Resource) -> list[str]:
        """What a change to `obj` may give work to: itself, its dependents once it is gone or
        deleting them, and an owner waiting for its dependents to go."""
        keys: list[str] = []
        if obj.metadata.owner_references or finalizing(obj, ORPHAN_FINALIZER):
            keys.append(gc_key(obj))
        current = self._cached(gc_key(obj))
        if current is None or current.metadata.uid != obj.metadata.uid:
            keys += self._dependents.get(obj.metadata.uid, ())  # gone: its dependents dangle
        elif finalizing(current, FOREGROUND_FINALIZER):
            keys.append(gc_key(current))
            keys += self._dependents.get(obj.metadata.uid, ())
        for ref in obj.metadata.owner_references:
            owner = self._cached_owner(obj, ref)
            if owner is not None and finalizing(owner, FOREGROUND_FINALIZER):
                keys.append(gc_key(owner))
        return keys

    def _cached(self, key: str) -> Resource | None:
        kind, _, rest = key.partition("/")
        informer = self.informers.get(kind)
        return informer.get(rest) if informer is not None else None

    def _cached_owner(self, dependent: Resource, ref: OwnerReference) -> Resource | None:
        info = owner_kind(ref)
        if info is None:
            return None
        owner = self._cached(f"{info.kind}/{_owner_namespace(dependent, info)}{ref.name}")
        return owner if owner is not None and owner.metadata.uid == ref.uid else None

    # -- reconciling

    async def reconcile(self, key: str) -> Result:
        obj = self._cached(key)
        if obj is None:
            return Result()  # gone: its dependents were queued when it went
        if obj.metadata.deletion_timestamp is not None:
            if ORPHAN_FINALIZER in obj.metadata.finalizers:
                await self._orphan_dependents(obj)
            if FOREGROUND_FINALIZER in obj.metadata.finalizers:
                await self._delete_dependents(obj)
            return Result()  # otherwise being deleted already: its dependents go once it is gone
        if obj.metadata.owner_references:
            await self._collect(obj)
        return Result()

    async def _collect(self, dependent: Resource) -> None:
        """Delete a dependent that has no owner left, or drop its references to owners gone."""
        refs = dependent.metadata.owner_references
        if all([await self._owner_state(dependent, ref, live=False) == "solid" for ref in refs]):
            return  # the common case, decided from the caches alone
        info = kinds.of(dependent)
        try:
            live = await self.client.get_kind(info, dependent.metadata.name, dependent.metadata.namespace)
        except NotFound:
            return
        if (
            live.metadata.uid != dependent.metadata.uid
            or live.metadata.deletion_timestamp is not None
            or not live.metadata.owner_references  # orphaned meanwhile
        ):
            return
        states = {
            ref.uid: await self._owner_state(live, ref, live=True) for ref in live.metadata.owner_references
        }
        if "solid" in states.values():
            stale = [uid for uid, state in states.items() if state != "solid"]
            if stale:
                log.info("%s: dropping references to owners %s", gc_key(live), ", ".join(stale))
                await self._patch_meta(live, without_owners(stale))
            return
        policy = _policy(
            live, chained="waiting" in states.values() and bool(self._dependents.get(live.metadata.uid))
        )
        log.info("%s: deleting (%s), no owner left", gc_key(live), policy.lower())
        try:
            await self.client.delete_kind(
                info,
                live.metadata.name,
                live.metadata.namespace,
                resource_version=live.metadata.resource_version,
                propagation_policy=policy,
            )
        except NotFound:
            pass  # gone meanwhile: what we wanted

    async def _owner_state(self, dependent: Resource, ref: OwnerReference, *, live: bool) -> OwnerState:
        info = owner_kind(ref)
        if info is None or (info.namespaced and not dependent.metadata.namespace):
            return "solid"  # what we cannot look up we never collect
        if ref.uid in self._absent:
            return "dangling"
        owner: Resource | None
        if live:
            try:
                owner = await self.client.get_kind(info, ref.name, dependent.metadata.namespace)
            except NotFound:
                owner = None
        else:
            owner = self._cached_owner(dependent, ref)
        if owner is None or owner.metadata.uid != ref.uid:
            if live:
                self._absent[ref.uid] = None
                while len(self._absent) > ABSENT_MEMORY:
                    self._absent.popitem(last=False)
            return "dangling"
        return "waiting" if finalizing(owner, FOREGROUND_FINALIZER) else "solid"

    async def _delete_dependents(self, owner: Resource) -> None:
        """Foreground: the dependents are queued (`keys`) and deleted as theirs; once none that
        blocks its owner's deletion is left, let the owner go."""
        cached = [self._cached(key) for key in self._dependents.get(owner.metadata.uid, ())]
        if any(d is not None and blocks(d, owner) for d in cached):
            return  # we hear of each change to them
        if any(blocks(d, owner) for d in await self._live_dependents(owner)):
            return  # not in our caches yet: we hear of them once they are
        log.info("%s: no dependent blocks it; removing %s", gc_key(owner), FOREGROUND_FINALIZER)
        await self._patch_meta(owner, without_finalizer(FOREGROUND_FINALIZER))

    async def _orphan_dependents(self, owner: Resource) -> None:
        """Orphan: drop the references to the owner from its dependents, then the finalizer."""
        for dependent in await self._live_dependents(owner):
            await self._patch_meta(dependent, without_owners([owner.metadata.uid]))
        log.info("%s: dependents orphaned; removing %s", gc_key(owner), ORPHAN_FINALIZER)
        await self._patch_meta(owner, without_finalizer(ORPHAN_FINALIZER))

    async def _live_dependents(self, owner: Resource) -> list[Resource]:
        """The owner's dependents as the API lists them now. Our index may lag behind (a dependent
        created just before its owner was deleted), and before letting an owner go, or orphaning,
        missing one would leave it with a dangling reference, which deletes it."""
        namespace = owner.metadata.namespace or subjects.ALL  # a cluster-scoped owner's are anywhere
        found = []
        for info in kinds.KINDS:
            if info.kind in self.informers and (info.namespaced or not owner.metadata.namespace):
                items, _ = await self.client.list_kind(info, namespace)
                found += [
                    d for d in items if any(r.uid == owner.metadata.uid for r in d.metadata.owner_references)
                ]
        return found

    async def _patch_meta(self, obj: Resource, change: MetaChange) -> None:
        """Patch the latest version of `obj` with what `change` makes of its metadata (compare-and-set,
        read again after a lost race); nothing if it is gone or was replaced by a namesake."""
        info, meta = kinds.of(obj), obj.metadata
        for _ in range(CONFLICT_RETRIES):
            try:
                current = await self.client.get_kind(info, meta.name, meta.namespace)
                fields = change(current.metadata) if current.metadata.uid == meta.uid else None
                if fields is None:
                    return
                patch = {"metadata": {"resourceVersion": current.metadata.resource_version, **fields}}
                await self.client.patch_kind(info, meta.name, patch, meta.namespace)
                return
            except NotFound:
                return
            except Conflict:
                continue
        raise Conflict(f"{gc_key(obj)} kept changing")


def blocks(dependent: Resource, owner: Resource) -> bool:
    """Whether `dependent` holds a foreground deletion of `owner` until it is gone."""
    return any(
        r.uid == owner.metadata.uid and r.block_owner_deletion for r in dependent.metadata.owner_references
    )


def _policy(dependent: Resource, *, chained: bool) -> PropagationPolicy:
    """How to delete a dependent with no owner left (Kubernetes' choice): in the foreground when an
    owner waits for it and it has dependents of its own, else as its own finalizers ask."""
    finalizers = dependent.metadata.finalizers
    if chained:
        return "Foreground"
    if ORPHAN_FINALIZER in finalizers:
        return "Orphan"
    if FOREGROUND_FINALIZER in finalizers:
        return "Foreground"
    return "Background"


def _owner_namespace(dependent: Resource, info: kinds.KindInfo) -> str:
    """The cache-key prefix of an owner: owners share their dependent's namespace, or have none."""
    return f"{dependent.metadata.namespace}/" if info.namespaced else ""


def garbage_collector(
    client: Client, informers: Mapping[str, Informer[Any]], *, workers: int = 1
) -> Controller:
    """The controller, wired to one informer per collected kind (`collected_informers`)."""
    collector = GarbageCollector(client, informers)
    controller = Controller("garbagecollector", collector, workers=workers)
    for informer in informers.values():
        controller.watch(informer, collector.keys)
    return controller
