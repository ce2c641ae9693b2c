"""A typed store over JetStream key-value buckets: the cluster's etcd.

One bucket per kind, key `<namespace>.<name>`. `metadata.resourceVersion` is the KV revision of
the entry, so every write is a compare-and-set against the revision the writer last read; a lost
race is a `Conflict`, never a silent overwrite. Deletes write a KV delete marker whose body is the
object's final state, so watchers see what was deleted (as in a Kubernetes DELETED event). Only
the API creates buckets (`bus.buckets`). A stored value that cannot be read is left out of lists
and watches and reported, never a reason for a reader to fail (`bus.unreadable`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Literal, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.kv import KV_DEL, KV_MARKER_REASON, KV_OP, KV_PURGE, KeyValue

from bus import kinds, subjects
from bus.buckets import MAX_CONSUMERS as MAX_CONSUMERS  # for bus.metrics
from bus.buckets import Buckets
from bus.buckets import StoreConfig as StoreConfig
from bus.client import forbidden_message
from bus.codec import encode
from bus.connection import Denied
from bus.errors import AlreadyExists, Conflict, Forbidden, NotFound, SteerError, Unavailable
from bus.failures import translate
from bus.following import CAUGHT_UP, LOST, RESTARTED, Marker, follow
from bus.following import ONE_SHOT_CONSUMER_TTL as ONE_SHOT_CONSUMER_TTL  # for bus.metrics
from bus.meta import Resource
from bus.selectors import Selector, matches
from bus.unreadable import UnreadableEntry, UnreadableError

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Resource)
T = TypeVar("T")

WatchType = Literal["ADDED", "MODIFIED", "DELETED", "SYNCED", "STALE"]
OnUnreadable = Callable[[UnreadableEntry], None]

_EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"


class WatchEvent(msgspec.Struct, frozen=True):
    """One change seen by a watch. SYNCED (no object) marks the end of the initial listing, and
    the end of each catching up after a STALE (no object): the connection dropped, and until the
    next SYNCED what the watch has shown may be out of date."""

    type: WatchType
    key: str = ""
    object: Any = None
    revision: int = 0


def _nats_errors(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return await fn(*args, **kwargs)
        except SteerError:
            raise
        except (TimeoutError, nats.errors.Error) as err:
            raise translate(err) from err

    return wrapper


class Store:
    def __init__(self, js: JetStreamContext, config: StoreConfig | None = None) -> None:
        self._js = js
        self.buckets = Buckets(js, config)
        self._decoders: dict[type[Resource], msgspec.json.Decoder[Any]] = {}
        self._reported: set[tuple[str, str, int]] = set()
        self._on_unreadable: list[OnUnreadable] = []

    # -- buckets

    async def bucket(self, info: kinds.KindInfo) -> KeyValue:
        """The kind's bucket; Unavailable if the API has not created it yet."""
        return (await self.buckets.get(info)).kv

    async def ensure_buckets(self) -> None:
        """Create the buckets that are missing (the API, and only the API, does this)."""
        await self.buckets.ensure()

    async def wait_for_buckets(self) -> None:
        """Until the API has created every bucket (a component started before it)."""
        await self.buckets.wait()

    # -- values that cannot be read

    def on_unreadable(self, handler: OnUnreadable) -> None:
        """`handler(entry)` once per unreadable key and revision this store meets; quick and
        non-blocking (bus.unreadable.UnreadableReporter queues it)."""
        self._on_unreadable.append(handler)

    def _read(
        self, info: kinds.KindInfo, bucket: str, key: str, data: bytes, revision: int
    ) -> Resource | UnreadableEntry:
        """The object a stored value holds, or what is wrong with it (reported once)."""
        decoder = self._decoders.get(info.type)
        if decoder is None:
            decoder = self._decoders[info.type] = msgspec.json.Decoder(info.type)
        try:
            obj: Resource = decoder.decode(data)
        except msgspec.DecodeError as err:
            problem = f"does not decode as a {info.kind}: {err}"
        else:
            meta = obj.metadata
            if subjects.key(meta.namespace if info.namespaced else "", meta.name) == key:
                meta.resource_version = str(revision)
                return obj
            problem = f'holds {info.kind} "{meta.name}" of namespace "{meta.namespace}", another key'
        entry = UnreadableEntry(info, bucket, key, revision, problem)
        if (bucket, key, revision) not in self._reported:
            self._reported.add((bucket, key, revision))
            log.error("%s", entry.message())
            for handler in self._on_unreadable:
                try:
                    handler(entry)
                except Exception:  # a handler's bug must not stop the reading
                    log.exception("unreadable-value handler failed")
        return entry

    # -- reads

    @_nats_errors
    async def get(self, cls: type[R], namespace: str, name: str) -> R:
        """The object; NotFound, or UnreadableError if its stored value cannot be read. Any
        replica may answer (a hint, possibly a moment old), but only the leader says NotFound."""
        info = kinds.BY_KIND[cls.__name__]
        key = subjects.key(namespace, name)
        try:
            kv = await self.bucket(info)
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            pass  # asked of the leader below
        except Denied as denied:
            raise Forbidden(forbidden_message(denied.identity, "get", info, namespace)) from None
        else:
            assert entry.revision is not None
            read = self._read(info, kv._name, key, entry.value or b"", entry.revision)
            if isinstance(read, UnreadableEntry):
                raise UnreadableError(read)
            return read  # type: ignore[return-value]
        # In a cluster a read may be served by a replica a moment behind a write already
        # acknowledged: a miss is asked of the stream leader before it is an answer, so an
        # object created a moment ago is never reported missing. (A reader that may not ask the
        # leader keeps the replica's answer.)
        try:
            return await self.get_from_leader(cls, namespace, name)
        except Forbidden:
            raise NotFound(not_found_message(info, name)) from None

    @_nats_errors
    async def get_from_leader(self, cls: type[R], namespace: str, name: str) -> R:
        """The object as its bucket's stream leader holds it. A plain `get` may be served by a
        replica a moment behind; this read is for when that moment matters (a create that was
        just told its name is taken reads who took it)."""
        info = kinds.BY_KIND[cls.__name__]
        bucket = await self.buckets.get(info)
        key = subjects.key(namespace, name)
        try:
            msg = await self._js.get_last_msg(bucket.stream, subjects.kv_subject(bucket.name, key))
        except nats.js.errors.NotFoundError:
            raise NotFound(not_found_message(info, name)) from None
        if _is_delete(msg.headers) or msg.seq is None:
            raise NotFound(not_found_message(info, name))
        read = self._read(info, bucket.name, key, msg.data or b"", msg.seq)
        if isinstance(read, UnreadableEntry):
            raise UnreadableError(read)
        return read  # type: ignore[return-value]

    async def list(
        self,
        cls: type[R],
        namespace: str = subjects.ALL,
        *,
        selector: Selector | None = None,
        unreadable: list[UnreadableEntry] | None = None,
    ) -> tuple[list[R], int]:
        """Objects of a kind in one namespace (or all, with `*`), and the highest revision seen.
        Values that cannot be read are left out (and added to `unreadable`, if given)."""
        listed: dict[str, R] = {}
        revision = 0
        found = unreadable.append if unreadable is not None else None
        async for event in self.watch(cls, namespace, initial_only=True, unreadable=found):
            if event.type == "SYNCED":
                break
            revision = max(revision, event.revision)
            # A listing read partly from a replica that was behind goes on from the leader's
            # copy, where a key may come again (newer) or go: the last word on each key counts.
            listed.pop(event.key, None)
            if event.type != "DELETED" and (
                selector is None or matches(selector, event.object.metadata.labels)
            ):
                listed[event.key] = event.object
        items = sorted(listed.values(), key=lambda o: (o.metadata.namespace, o.metadata.name))
        return items, revision

    async def watch(
        self,
        cls: type[R],
        namespace: str = subjects.ALL,
        *,
        initial_only: bool = False,
        unreadable: OnUnreadable | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """List-then-watch (`_watch`); Forbidden, in kubectl's words, when the server's
        permissions refuse this identity the bucket or the namespace."""
        events = self._watch(cls, namespace, initial_only=initial_only, unreadable=unreadable)
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    yield event
        except Denied as denied:
            info = kinds.BY_KIND[cls.__name__]
            verb = "list" if initial_only else "watch"
            raise Forbidden(forbidden_message(denied.identity, verb, info, namespace)) from None

    async def _watch(
        self,
        cls: type[R],
        namespace: str = subjects.ALL,
        *,
        initial_only: bool = False,
        unreadable: OnUnreadable | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """List-then-watch: ADDED for every current object, SYNCED, then live changes.

        The entries come from an ordered consumer with deliver policy last-per-subject, which
        `bus.following` resumes right after the last revision seen whenever the connection comes
        back: STALE when the connection drops, SYNCED again once the resumed watch has caught up,
        and in between exactly the changes missed. A watch away longer than its bucket's delete
        markers last lists again instead, and reports what vanished meanwhile as DELETED. Keys
        seen are remembered with their last object, so a later put is ADDED for a new key and
        MODIFIED for a known one, and a DELETED always carries the object's final state (the
        delete marker's body, or the last one seen). A value that cannot be read is left out
        (DELETED if the key was known) and passed to `unreadable`.
        """
        info = kinds.BY_KIND[cls.__name__]
        bucket = await self.buckets.get(info)
        prefix = subjects.kv_subject(bucket.name, "")
        known: dict[str, Resource] = {}
        relisted: set[str] | None = None  # keys seen since a RESTARTED, until caught up
        latest = 0
        messages = follow(
            self._js,
            stream=bucket.stream,
            subject=subjects.kv_subject(bucket.name, subjects.key_filter(namespace)),
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            one_shot=initial_only,
            resume_within=bucket.resume_within,
        )
        async with contextlib.aclosing(messages):
            async for item in messages:
                if item is LOST:
                    yield WatchEvent("STALE")
                    continue
                if item is RESTARTED:
                    relisted = set()
                    continue
                if item is CAUGHT_UP:
                    if relisted is not None:
                        for key in [k for k in known if k not in relisted]:
                            yield WatchEvent("DELETED", key, known.pop(key), latest)  # gone meanwhile
                        relisted = None
                    yield WatchEvent("SYNCED")
                    continue
                assert not isinstance(item, Marker)
                key = item.subject[len(prefix) :]
                revision = latest = item.metadata.sequence.stream
                if _is_delete(item.headers):
                    last = known.pop(key, None)
                    if last is not None:
                        final = self._read(info, bucket.name, key, item.data, revision) if item.data else last
                        yield WatchEvent(
                            "DELETED", key, final if isinstance(final, Resource) else last, revision
                        )
                    continue
                read = self._read(info, bucket.name, key, item.data, revision)
                if isinstance(read, UnreadableEntry):
                    if unreadable is not None:
                        unreadable(read)
                    last = known.pop(key, None)
                    if last is not None:
                        yield WatchEvent("DELETED", key, last, revision)
                    continue
                if relisted is not None:
                    relisted.add(key)
                    if (
                        key in known
                        and known[key].metadata.resource_version == read.metadata.resource_version
                    ):
                        continue  # unchanged while we were away
                change: WatchType = "MODIFIED" if key in known else "ADDED"
                known[key] = read
                yield WatchEvent(change, key, read, revision)

    # -- writes (compare-and-set)

    @_nats_errors
    async def create(self, obj: R) -> R:
        """Store a new object; AlreadyExists if its key holds one. A key whose last entry is a
        delete marker is free: the write then compares against the marker's revision."""
        info = kinds.of(obj)
        bucket = await self.buckets.get(info)
        key = subjects.key(obj.metadata.namespace, obj.metadata.name)
        taken = AlreadyExists(f'{info.plural} "{obj.metadata.name}" already exists')
        try:
            revision = await bucket.kv.update(key, _body(obj), last=0)
        except nats.js.errors.KeyWrongLastSequenceError:
            # Taken, or deleted (its marker is its last entry), or another write of the key is
            # still being replicated (the leader takes one compare-and-set per key at a time).
            # Asked of the stream leader, which refused the write: a replica may not have the
            # entry yet (nats-py's `create` asks any replica, and took such a miss for an error).
            try:
                last = await self._js.get_last_msg(bucket.stream, subjects.kv_subject(bucket.name, key))
            except nats.js.errors.NotFoundError:
                # Nothing stored: a write in flight (perhaps this create's own first attempt,
                # whose reply was lost), or a purge since. Either way the name is not known to
                # be taken, and trying again settles it.
                raise Unavailable(
                    f'another write of {info.plural} "{obj.metadata.name}" is in flight; try again'
                ) from None
            if not _is_delete(last.headers) or last.seq is None:
                raise taken from None
            try:
                revision = await bucket.kv.update(key, _body(obj), last=last.seq)
            except nats.js.errors.KeyWrongLastSequenceError:
                raise taken from None
        obj.metadata.resource_version = str(revision)
        return obj

    @_nats_errors
    async def update(self, obj: R) -> R:
        """Write `obj` only if the stored revision is still `obj.metadata.resourceVersion`."""
        info = kinds.of(obj)
        kv = await self.bucket(info)
        last = _revision(obj)
        try:
            revision = await kv.update(
                subjects.key(obj.metadata.namespace, obj.metadata.name), _body(obj), last
            )
        except nats.js.errors.KeyWrongLastSequenceError:
            raise Conflict(conflict_message(info, obj.metadata.name)) from None
        obj.metadata.resource_version = str(revision)
        return obj

    async def delete(self, obj: Resource) -> None:
        """Remove `obj` if unchanged since read; the delete marker carries its final state."""
        info = kinds.of(obj)
        kv = await self.bucket(info)
        key = subjects.key(obj.metadata.namespace, obj.metadata.name)
        await self._delete(info, kv._name, key, _revision(obj), _body(obj))

    async def delete_unreadable(self, entry: UnreadableEntry) -> None:
        """Remove a value that cannot be read, if it is still at `entry.revision`."""
        await self._delete(entry.info, entry.bucket, entry.key, entry.revision, b"")

    @_nats_errors
    async def _delete(self, info: kinds.KindInfo, bucket: str, key: str, revision: int, body: bytes) -> None:
        headers = {KV_OP: KV_DEL, _EXPECTED_LAST: str(revision)}
        try:
            await self._js.publish(subjects.kv_subject(bucket, key), body, headers=headers)
        except nats.js.errors.APIError as err:
            if err.err_code in (10071, 10164):
                raise Conflict(conflict_message(info, subjects.split_key(key)[1])) from None
            raise


def _is_delete(headers: dict[str, str] | None) -> bool:
    """A KV delete or purge marker, including the server's own TTL-expiry markers."""
    if not headers:
        return False
    if headers.get(KV_OP) in (KV_DEL, KV_PURGE):
        return True
    return headers.get(KV_MARKER_REASON) in ("MaxAge", "Purge", "Remove")


def _body(obj: Resource) -> bytes:
    # The revision is assigned by the write itself, so the stored body never carries one.
    version = obj.metadata.resource_version
    obj.metadata.resource_version = ""
    try:
        return encode(obj)
    finally:
        obj.metadata.resource_version = version


def _revision(obj: Resource) -> int:
    try:
        return int(obj.metadata.resource_version)
    except ValueError:
        raise Conflict(f'invalid resourceVersion "{obj.metadata.resource_version}"') from None


def not_found_message(info: kinds.KindInfo, name: str) -> str:
    return f'{info.qualified_plural} "{name}" not found'


def conflict_message(info: kinds.KindInfo, name: str) -> str:
    return (
        f'Operation cannot be fulfilled on {info.qualified_plural} "{name}": '
        "the object has been modified; please apply your changes to the latest version and try again"
    )
