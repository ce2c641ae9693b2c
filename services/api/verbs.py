"""The API verbs: decode, validate, admit, write with compare-and-set, and report what happened.

Each verb takes the kind, the namespace (from the subject) and the raw request body, and returns
the object to reply with plus the lifecycle events to record once the reply is sent. Nothing is
written until the request has been fully validated, so bad input never changes stored state.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from bus import fields, kinds, selectors, subjects
from bus.codec import to_builtins
from bus.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    StatusCause,
    SteerError,
    invalid,
)
from bus.events import make_event, now, reference
from bus.meta import Resource
from bus.podview import NETWORK_VIEW, network_view
from bus.protocol import (
    FOREGROUND_FINALIZER,
    NODE_LEASE_NAMESPACE,
    ORPHAN_FINALIZER,
    SYSTEM_NAMESPACE,
    DeleteRequest,
    GetRequest,
    ListRequest,
    ObjectList,
    PatchRequest,
    PropagationPolicy,
)
from bus.resources import Event, Namespace, Pod, Service
from bus.store import Store, conflict_message
from bus.unreadable import UnreadableEntry, UnreadableError, left_out
from bus.validation import decode_object, requests
from bus.validation.rules import at_least
from bus.validation.schema import wrong_type
from services.api import listing
from services.api.admission import drop_unchanged_node_ports, prepare_create, prepare_update
from services.api.allocations import Allocations, Claims
from services.api.bodies import REPLY_HEADROOM, check_size, object_limit, parse_json, parse_request
from services.api.namespaces import NamespaceCache
from services.api.patch import merge_patch

log = logging.getLogger(__name__)

T = TypeVar("T")

COMPONENT = "steer-api"
CONFLICT_RETRIES = 5
PROTECTED_NAMESPACES = frozenset({"default", NODE_LEASE_NAMESPACE, SYSTEM_NAMESPACE})


@dataclass
class Outcome:
    """What a verb replies with, and what to do once the reply is out.

    `written` is set when the store changed (so node agents may need to hear of it), and
    `deleted` when the object was removed rather than written. `events` are lifecycle events
    to record; `stream` are Events already stored that go on the events stream.
    """

    reply: Any
    events: list[Event] = field(default_factory=list)
    stream: list[Event] = field(default_factory=list)
    written: bool = False
    deleted: bool = False
    related: list[Outcome] = field(default_factory=list)  # writes this one caused (namespace content)
    warnings: list[str] = field(default_factory=list)  # for the reply's warning header

    def all(self) -> list[Outcome]:
        return [self, *(o for related in self.related for o in related.all())]


class Verbs:
    def __init__(
        self, store: Store, namespaces: NamespaceCache, allocations: Allocations, *, max_payload: int
    ) -> None:
        self.store = store
        self.namespaces = namespaces
        self.allocations = allocations
        self.object_limit = object_limit(max_payload)
        self.page_budget = max_payload - REPLY_HEADROOM

    # -- helpers

    def _lifecycle(self, obj: Resource, reason: str, message: str) -> list[Event]:
        if not kinds.of(obj).lifecycle_events:
            return []
        return [make_event(reference(obj), reason=reason, message=message, component=COMPONENT)]

    async def _require_namespace(self, info: kinds.KindInfo, namespace: str) -> None:
        if not info.namespaced:
            return
        try:
            terminating = await self.namespaces.is_terminating(namespace)
        except NotFound:
            raise NotFound(f'namespaces "{namespace}" not found') from None
        if terminating and info.kind != "Event":
            raise Forbidden(
                f"{info.qualified_plural} is forbidden: unable to create new content in namespace "
                f'"{namespace}" because it is being terminated'
            )

    def _decode_for(self, info: kinds.KindInfo, namespace: str, raw: Any) -> Resource:
        if not isinstance(raw, dict):
            raise BadRequest(f"a {info.kind} must be a JSON object")
        if "kind" not in raw:
            raw["kind"] = info.kind
        if "apiVersion" not in raw:
            raw["apiVersion"] = info.api_version
        metadata = raw.get("metadata")
        if isinstance(metadata, dict) and info.namespaced:
            given = metadata.get("namespace")
            if given and given != namespace:
                raise BadRequest(
                    f'the namespace of the object ("{given}") does not match the namespace of the request '
                    f'("{namespace}")'
                )
            metadata["namespace"] = namespace
        elif isinstance(metadata, dict):
            metadata.pop("namespace", None)
        return decode_object(raw, expected=info)

    # -- verbs

    async def create(self, info: kinds.KindInfo, namespace: str, body: bytes, *, uid: str = "") -> Outcome:
        """Store a new object. `uid` is the one the client chose (CREATE_UID_HEADER): if the name
        is taken by an object with that uid, this is a create sent again whose first attempt
        was stored, and the answer is that object (nothing is written twice)."""
        obj = self._decode_for(info, namespace, parse_json(body, limit=self.object_limit))
        if not obj.metadata.name and not obj.metadata.generate_name:
            raise invalid(info.kind, "", [StatusCause(field="metadata.name", message="Required value")])
        await self._require_namespace(info, namespace)
        prepare_create(obj, info, uid=uid)
        check_size(obj, self.object_limit)
        try:
            claims = await self.allocations.claim(obj) if isinstance(obj, Service) else Claims()
        except Invalid as refused:
            # The address or a nodePort a Service asks for is taken, perhaps by the Service of this
            # very name (a manifest created twice; a create sent again whose first attempt was stored):
            # then the name is what is wrong, as a create without an address would say.
            meta = obj.metadata
            try:
                current = await self.store.get_from_leader(info.type, meta.namespace, meta.name)
            except NotFound:
                raise refused from None
            if uid and current.metadata.uid == uid:
                return Outcome(current)
            raise AlreadyExists(f'{info.plural} "{meta.name}" already exists') from None
        try:
            stored = await self.store.create(obj)
        except AlreadyExists as err:
            await self.allocations.unclaim(claims, err)
            if not uid:
                raise
            return Outcome(await self._created_before(info, obj, uid))
        except Exception as err:
            await self.allocations.unclaim(claims, err)
            raise
        return Outcome(
            stored,
            self._lifecycle(stored, "Created", f"Created {info.singular} {stored.metadata.name}"),
            written=True,
        )

    async def _created_before(self, info: kinds.KindInfo, obj: Resource, uid: str) -> Resource:
        """The stored object under `obj`'s name if it is the one created with `uid`; else
        AlreadyExists. Read from the stream leader, which said the name is taken: a replica
        might not have the object yet."""
        meta = obj.metadata
        try:
            current = await self.store.get_from_leader(info.type, meta.namespace, meta.name)
        except NotFound:
            current = None  # deleted since: the name was taken all the same
        if current is None or current.metadata.uid != uid:
            raise AlreadyExists(f'{info.plural} "{meta.name}" already exists')
        return current

    async def get(self, info: kinds.KindInfo, namespace: str, body: bytes) -> Outcome:
        request = parse_request(body, GetRequest)
        requests.check("invalid get request", requests.lookup_name(request.name))
        return Outcome(await self.store.get(info.type, namespace, request.name))

    async def list_objects(self, info: kinds.KindInfo, namespace: str, body: bytes) -> Outcome:
        request = parse_request(body, ListRequest) if body else ListRequest()
        requests.check("invalid list request", at_least("limit", request.limit, 0))
        after = listing.decode_token(request.continue_) if request.continue_ else None
        try:
            requirements = selectors.parse(request.label_selector) if request.label_selector else None
        except ValueError as err:
            raise BadRequest(f"invalid label selector: {err}") from None
        try:
            field_selector = fields.parse(request.field_selector, info.kind)
        except ValueError as err:
            raise BadRequest(f"invalid field selector: {err}") from None
        unreadable: list[UnreadableEntry] = []
        if request.view and (request.view != NETWORK_VIEW or info.kind != "Pod"):
            raise BadRequest(f"view {request.view!r} is not served for {info.plural} (only pods: network)")
        items, revision = await self.store.list(
            info.type, namespace or subjects.ALL, selector=requirements, unreadable=unreadable
        )
        if field_selector:
            items = [item for item in items if fields.matches(field_selector, item)]
        if request.view:
            items = [network_view(item) for item in items if isinstance(item, Pod)]
        items.sort(key=lambda item: (item.metadata.namespace, item.metadata.name))
        page = listing.paginate(items, after=after, limit=request.limit, budget=self.page_budget)
        reply = ObjectList(kind=f"{info.kind}List", api_version=info.api_version, items=page.items)
        version = after.rv if after is not None else str(revision)
        reply.metadata.resource_version = version
        if page.last is not None:
            reply.metadata.continue_ = listing.encode_token(listing.Cursor(version, *page.last))
            reply.metadata.remaining_item_count = page.remaining
        return Outcome(reply, warnings=[left_out(info, unreadable)] if unreadable else [])

    async def update(self, info: kinds.KindInfo, namespace: str, body: bytes) -> Outcome:
        raw = parse_json(body, limit=self.object_limit)
        if info.kind == "Service":
            await self._drop_node_ports(info, namespace, raw)
        new = self._decode_for(info, namespace, raw)
        _check_precondition(new)

        async def write(current: Resource) -> Outcome:
            # A copy for each attempt: the write fills in what it allocates, which a lost
            # compare-and-set gives back.
            return await self._replace(info, copy.deepcopy(new), current)

        return await self._retrying(info, namespace, new.metadata.name, new.metadata.resource_version, write)

    async def _drop_node_ports(self, info: kinds.KindInfo, namespace: str, raw: Any) -> None:
        """A Service update that changes the type to ClusterIP and leaves the nodePorts as they
        were drops them, as Kubernetes does, rather than being refused for them. The stored
        Service is a hint here: the write itself compares and sets."""
        name = raw.get("metadata", {}).get("name") if isinstance(raw, dict) else None
        if not isinstance(name, str) or requests.lookup_name(name):
            return
        try:
            current = await self.store.get(info.type, namespace, name)
        except SteerError:
            return  # the verb itself reports what is wrong
        drop_unchanged_node_ports(raw, current)

    async def _retrying(
        self,
        info: kinds.KindInfo,
        namespace: str,
        name: str,
        precondition: str,
        write: Callable[[Resource], Awaitable[Outcome]],
    ) -> Outcome:
        """Read the object and `write` it; after a lost compare-and-set, read again and retry.

        With a `precondition` (the resourceVersion the client read) there is no retry: a stale
        version is the client's Conflict, as in Kubernetes.
        """
        for _ in range(CONFLICT_RETRIES):
            current = await self.store.get(info.type, namespace, name)
            if precondition and precondition != current.metadata.resource_version:
                break
            try:
                return await write(current)
            except Conflict:
                if precondition:
                    raise
        raise Conflict(conflict_message(info, name))

    async def _replace(self, info: kinds.KindInfo, new: Resource, current: Resource) -> Outcome:
        """Write `new` over `current` (compare-and-set on current's revision)."""
        prepare_update(new, current)
        new.metadata.resource_version = current.metadata.resource_version
        if new == current:
            return Outcome(current)  # nothing changed: no write, no new resourceVersion
        if _finished(current, new):
            await self.store.delete(new)
            deleted = self._lifecycle(new, "Deleted", f"Deleted {info.singular} {new.metadata.name}")
            return Outcome(new, deleted, written=True, deleted=True)
        check_size(new, self.object_limit)
        claims = Claims()
        if isinstance(new, Service) and isinstance(current, Service):
            claims = await self.allocations.claim_update(new, current)
        try:
            stored = await self.store.update(new)
        except Exception as err:
            await self.allocations.unclaim(claims, err)
            raise
        if isinstance(stored, Service) and isinstance(current, Service):
            await self.allocations.release_unused(stored, current)
        events = []
        if stored.metadata.generation != current.metadata.generation and info.update_events:
            message = (
                f"Updated {info.singular} {stored.metadata.name} (generation {stored.metadata.generation})"
            )
            events = self._lifecycle(stored, "Updated", message)
        return Outcome(stored, events, written=True)

    async def patch(self, info: kinds.KindInfo, namespace: str, body: bytes) -> Outcome:
        request = parse_request(body, PatchRequest, limit=self.object_limit)
        precondition = _patch_precondition(request)

        async def write(current: Resource) -> Outcome:
            patched = merge_patch(to_builtins(current), request.patch)
            metadata = patched.get("metadata") if isinstance(patched, dict) else None
            if not isinstance(metadata, dict) or metadata.get("name") != request.name:
                raise BadRequest("a patch may not change metadata.name")
            patched.get("metadata", {}).pop("resourceVersion", None)
            drop_unchanged_node_ports(patched, current)
            return await self._replace(info, self._decode_for(info, namespace, patched), current)

        return await self._retrying(info, namespace, request.name, precondition, write)

    async def status(self, info: kinds.KindInfo, namespace: str, body: bytes) -> Outcome:
        if "status" not in info.type.__struct_fields__:
            raise BadRequest(f"{info.plural} have no status")
        given = self._decode_for(info, namespace, parse_json(body, limit=self.object_limit))
        _check_precondition(given)

        async def write(current: Resource) -> Outcome:
            updated = msgspec.structs.replace(current, status=given.status)  # type: ignore[attr-defined]
            if updated == current:
                return Outcome(current)
            check_size(updated, self.object_limit)
            return Outcome(await self.store.update(updated), written=True)

        return await self._retrying(
            info, namespace, given.metadata.name, given.metadata.resource_version, write
        )

    async def delete(self, info: kinds.KindInfo, namespace: str, body: bytes) -> Outcome:
        request = parse_request(body, DeleteRequest)
        causes = requests.lookup_name(request.name) + requests.resource_version(request.resource_version)
        if request.grace_period_seconds is not None:
            causes += at_least("gracePeriodSeconds", request.grace_period_seconds, 0)
        requests.check("invalid delete request", causes)
        if info.kind == "Namespace" and request.name in PROTECTED_NAMESPACES:
            raise Forbidden(f'namespaces "{request.name}" is forbidden: this namespace may not be deleted')

        async def write(current: Resource) -> Outcome:
            outcome = await self._delete(info, current, request)
            if isinstance(current, Namespace):
                outcome.related = await self._empty_namespace(current.metadata.name)
            return outcome

        try:
            return await self._retrying(info, namespace, request.name, request.resource_version, write)
        except UnreadableError as err:
            return await self._delete_unreadable(err.entry, request.resource_version)

    async def release_allocations(self, outcome: Outcome) -> None:
        """Delete the IPAddresses and NodePorts of the Services an outcome removed from the store
        (a delete, the last finalizer gone, a namespace emptied); never fails the request."""
        for done in outcome.all():
            if done.deleted and isinstance(done.reply, Service):
                await self.allocations.release(done.reply)

    async def _delete_unreadable(self, entry: UnreadableEntry, precondition: str = "") -> Outcome:
        """Remove a stored value that cannot be read (compare-and-set on its revision): there is
        nothing to finalize or to stop, since no component could read it either."""
        if precondition and precondition != str(entry.revision):
            raise Conflict(conflict_message(entry.info, entry.name))
        await self.store.delete_unreadable(entry)
        log.info("deleted the unreadable value of %s (revision %d)", entry.key, entry.revision)
        gone = entry.placeholder()
        message = f"Deleted {entry.info.singular} {entry.name}, whose stored value could not be read"
        return Outcome(gone, self._lifecycle(gone, "Deleted", message), written=True, deleted=True)

    async def _delete(self, info: kinds.KindInfo, current: Resource, request: DeleteRequest) -> Outcome:
        """Remove now, or mark for deletion when someone still has work to do first: finalizers
        (the garbage collector's for a Foreground or Orphan delete among them) or, for a pod on a
        node, the node agent stopping its containers."""
        meta = current.metadata
        finalizers = _finalizers_for(meta.finalizers, request.propagation_policy)
        grace = _grace_period(current, request)
        if meta.deletion_timestamp is not None:
            # Already terminating: a shorter grace period replaces a longer one, never the reverse.
            if grace is None or (
                meta.deletion_grace_period_seconds is not None and grace >= meta.deletion_grace_period_seconds
            ):
                grace = meta.deletion_grace_period_seconds
            if finalizers == meta.finalizers and grace == meta.deletion_grace_period_seconds:
                return Outcome(current)
        if finalizers or grace:
            marked = msgspec.structs.replace(
                current,
                metadata=msgspec.structs.replace(
                    meta,
                    deletion_timestamp=meta.deletion_timestamp or now(),
                    deletion_grace_period_seconds=grace,
                    finalizers=finalizers,
                ),
            )
            if isinstance(marked, Namespace):
                marked.status.phase = "Terminating"
            stored = await self.store.update(marked)
            message = f"Deleting {info.singular} {meta.name}" + (f" (grace period {grace}s)" if grace else "")
            return Outcome(stored, self._lifecycle(stored, "Terminating", message), written=True)
        await self.store.delete(current)
        deleted = self._lifecycle(current, "Deleted", f"Deleted {info.singular} {meta.name}")
        return Outcome(current, deleted, written=True, deleted=True)

    async def _empty_namespace(self, namespace: str) -> list[Outcome]:
        """Delete everything in a namespace being deleted (Kubernetes' namespace controller)."""
        outcomes: list[Outcome] = []
        for info in kinds.KINDS:
            if not info.namespaced:
                continue
            unreadable: list[UnreadableEntry] = []
            items, _ = await self.store.list(info.type, namespace, unreadable=unreadable)
            for entry in unreadable:
                with contextlib.suppress(Conflict):  # rewritten meanwhile: the next pass sees it
                    outcomes.append(await self._delete_unreadable(entry))
            for item in items:
                try:
                    outcomes.append(await self._delete(info, item, DeleteRequest(name=item.metadata.name)))
                except (Conflict, NotFound):
                    log.info(
                        "namespace %s: %s %s changed while emptying", namespace, info.kind, item.metadata.name
                    )
        return outcomes


def _check_precondition(obj: Resource) -> None:
    causes = requests.resource_version(obj.metadata.resource_version, "metadata.resourceVersion")
    if causes:
        raise invalid(obj.kind, obj.metadata.name, causes)


def _patch_precondition(request: PatchRequest) -> str:
    """The resourceVersion a patch expects (its `metadata.resourceVersion`), checked with its name."""
    metadata = request.patch.get("metadata")
    causes = requests.lookup_name(request.name)
    version: object = ""
    if isinstance(metadata, dict):
        version = metadata.get("resourceVersion") or ""
    elif metadata is not None:
        causes.append(wrong_type("patch.metadata", metadata, "object"))
    if not isinstance(version, str):
        causes.append(wrong_type("patch.metadata.resourceVersion", version, "string"))
    else:
        causes += requests.resource_version(version, "patch.metadata.resourceVersion")
    requests.check("invalid patch request", causes)
    return version if isinstance(version, str) else ""


def _grace_period(obj: Resource, request: DeleteRequest) -> int | None:
    """Pods on a node get their grace period, for the node agent to stop them; all else is immediate.

    0 (not None) for a pod on a node means "stopped": a finalizer may still hold it, but once the
    last one goes it is removed (see `_finished`).
    """
    if not isinstance(obj, Pod) or not obj.spec.node_name:
        return None
    grace = request.grace_period_seconds
    if grace is None:
        grace = obj.spec.termination_grace_period_seconds
    return grace


def _finalizers_for(finalizers: list[str], policy: PropagationPolicy) -> list[str]:
    """The finalizers a delete leaves: Foreground and Orphan add the garbage collector's (and drop
    the other one, so a second delete can switch); Background, the default, keeps what is there,
    as Kubernetes does for a delete that names no policy."""
    match policy:
        case "Foreground":
            wanted, other = FOREGROUND_FINALIZER, ORPHAN_FINALIZER
        case "Orphan":
            wanted, other = ORPHAN_FINALIZER, FOREGROUND_FINALIZER
        case _:
            return finalizers
    kept = [f for f in finalizers if f != other]
    return kept if wanted in kept else [*kept, wanted]


def _finished(current: Resource, new: Resource) -> bool:
    """Whether an update ends a deletion: its last finalizer gone, and no pod still to be stopped
    (a pod on a node waits for its node agent's final delete, which sets the grace period to 0)."""
    return (
        current.metadata.deletion_timestamp is not None
        and not new.metadata.finalizers
        and not new.metadata.deletion_grace_period_seconds
    )
