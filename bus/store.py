"""A typed store over JetStream key-value buckets: the cluster's etcd.

One bucket per kind, key `<namespace>.<name>`. `metadata.resourceVersion` is the KV revision of
the entry, so every write is a compare-and-set against the revision the writer last read; a lost
race is a `Conflict`, never a silent overwrite. Deletes write a KV delete marker whose body is the
object's final state, so watchers see what was deleted (as in a Kubernetes DELETED event).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, KeyValueConfig, StorageType
from nats.js.kv import KV_DEL, KV_MARKER_REASON, KV_OP, KV_PURGE, KeyValue

from bus import kinds, subjects
from bus.codec import encode
from bus.errors import AlreadyExists, Conflict, NotFound, SteerError
from bus.failures import translate
from bus.following import CAUGHT_UP, LOST, Marker, follow
from bus.following import ONE_SHOT_CONSUMER_TTL as ONE_SHOT_CONSUMER_TTL  # for bus.metrics
from bus.meta import Resource
from bus.selectors import Selector, matches

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Resource)
T = TypeVar("T")

WatchType = Literal["ADDED", "MODIFIED", "DELETED", "SYNCED", "STALE"]

MAX_CONSUMERS = 100_000


class WatchEvent(msgspec.Struct, frozen=True):
    """One change seen by a watch. SYNCED (no object) marks the end of the initial listing, and
    the end of each catching up after a STALE (no object): the connection dropped, and until the
    next SYNCED what the watch has shown may be out of date."""

    type: WatchType
    key: str = ""
    object: Any = None
    revision: int = 0


@dataclass
class StoreConfig:
    """How buckets are created: replicas and history for all, a TTL for liveness-type kinds."""

    replicas: int = 1
    history: int = 1
    storage: StorageType = StorageType.FILE
    ttl: dict[str, float] = field(default_factory=lambda: {"leases": 600.0, "events": 3600.0})


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
        self._config = config or StoreConfig()
        self._buckets: dict[str, KeyValue] = {}
        self._lock = asyncio.Lock()
        self._decoders: dict[type[Resource], msgspec.json.Decoder[Any]] = {}

    # -- buckets

    async def bucket(self, info: kinds.KindInfo) -> KeyValue:
        """The kind's bucket, created on first use; creation is idempotent across processes."""
        kv = self._buckets.get(info.plural)
        if kv is not None:
            return kv
        async with self._lock:
            kv = self._buckets.get(info.plural)
            if kv is None:
                kv = await self._open_bucket(info)
                self._buckets[info.plural] = kv
        return kv

    @_nats_errors
    async def _open_bucket(self, info: kinds.KindInfo) -> KeyValue:
        name = subjects.bucket(info.plural)
        with contextlib.suppress(nats.js.errors.BucketNotFoundError):  # absent: create it below
            kv = await self._js.key_value(name)
            await raise_consumer_limit(self._js, kv._stream)  # a bucket made before the limit was set
            return kv
        config = KeyValueConfig(
            bucket=name,
            history=self._config.history,
            replicas=self._config.replicas,
            storage=self._config.storage,
            ttl=self._config.ttl.get(info.plural),
            direct=True,
            description=f"steersman {info.plural}",
        )
        try:
            kv = await self._js.create_key_value(config)
        except nats.js.errors.BadRequestError:
            # Another process created it first with its own settings; use theirs.
            return await self._js.key_value(name)
        await raise_consumer_limit(self._js, kv._stream)
        return kv

    async def ensure_buckets(self) -> None:
        for info in kinds.KINDS:
            await self.bucket(info)

    # -- reads

    def _decode(self, info: kinds.KindInfo, data: bytes, revision: int) -> Resource:
        decoder = self._decoders.get(info.type)
        if decoder is None:
            decoder = self._decoders[info.type] = msgspec.json.Decoder(info.type)
        obj = decoder.decode(data)
        obj.metadata.resource_version = str(revision)
        return obj

    @_nats_errors
    async def get(self, cls: type[R], namespace: str, name: str) -> R:
        info = kinds.BY_KIND[cls.__name__]
        kv = await self.bucket(info)
        try:
            entry = await kv.get(subjects.key(namespace, name))
        except nats.js.errors.KeyNotFoundError:
            raise NotFound(not_found_message(info, name)) from None
        assert entry.value is not None and entry.revision is not None
        return self._decode(info, entry.value, entry.revision)  # type: ignore[return-value]

    async def list(
        self,
        cls: type[R],
        namespace: str = subjects.ALL,
        *,
        selector: Selector | None = None,
    ) -> tuple[list[R], int]:
        """Objects of a kind in one namespace (or all, with `*`), and the highest revision seen."""
        items: list[R] = []
        revision = 0
        async for event in self.watch(cls, namespace, initial_only=True):
            if event.type == "SYNCED":
                break
            revision = max(revision, event.revision)
            if selector is None or matches(selector, event.object.metadata.labels):
                items.append(event.object)
        items.sort(key=lambda o: (o.metadata.namespace, o.metadata.name))
        return items, revision

    async def watch(
        self, cls: type[R], namespace: str = subjects.ALL, *, initial_only: bool = False
    ) -> AsyncGenerator[WatchEvent, None]:
        """List-then-watch: ADDED for every current object, SYNCED, then live changes.

        The entries come from an ordered consumer with deliver policy last-per-subject, which
        `bus.following` resumes right after the last revision seen whenever the connection comes
        back: STALE when the connection drops, SYNCED again once the resumed watch has caught up,
        and in between exactly the changes missed. Keys seen are remembered with their last
        object, so a later put is ADDED for a new key and MODIFIED for a known one, and a DELETED
        always carries the object's final state (the delete marker's body, or the last one seen).
        """
        info = kinds.BY_KIND[cls.__name__]
        kv = await self.bucket(info)
        prefix = subjects.kv_subject(kv._name, "")
        known: dict[str, Resource] = {}
        messages = follow(
            self._js,
            stream=kv._stream,
            subject=subjects.kv_subject(kv._name, subjects.key_filter(namespace)),
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            one_shot=initial_only,
        )
        async with contextlib.aclosing(messages):
            async for item in messages:
                if item is LOST:
                    yield WatchEvent("STALE")
                    continue
                if item is CAUGHT_UP:
                    yield WatchEvent("SYNCED")
                    continue
                assert not isinstance(item, Marker)
                key = item.subject[len(prefix) :]
                revision = item.metadata.sequence.stream
                if _is_delete(item.headers):
                    last = known.pop(key, None)
                    if last is not None:
                        final = self._decode(info, item.data, revision) if item.data else last
                        yield WatchEvent("DELETED", key, final, revision)
                    continue
                obj = self._decode(info, item.data, revision)
                change: WatchType = "MODIFIED" if key in known else "ADDED"
                known[key] = obj
                yield WatchEvent(change, key, obj, revision)

    # -- writes (compare-and-set)

    @_nats_errors
    async def create(self, obj: R) -> R:
        info = kinds.of(obj)
        kv = await self.bucket(info)
        try:
            revision = await kv.create(subjects.key(obj.metadata.namespace, obj.metadata.name), _body(obj))
        except nats.js.errors.KeyWrongLastSequenceError:
            raise AlreadyExists(f'{info.plural} "{obj.metadata.name}" already exists') from None
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

    @_nats_errors
    async def delete(self, obj: Resource) -> None:
        """Remove `obj` if unchanged since read; the delete marker carries its final state."""
        info = kinds.of(obj)
        kv = await self.bucket(info)
        key = subjects.key(obj.metadata.namespace, obj.metadata.name)
        headers = {KV_OP: KV_DEL, "Nats-Expected-Last-Subject-Sequence": str(_revision(obj))}
        try:
            await self._js.publish(subjects.kv_subject(kv._name, key), _body(obj), headers=headers)
        except nats.js.errors.APIError as err:
            if err.err_code in (10071, 10164):
                raise Conflict(conflict_message(info, obj.metadata.name)) from None
            raise


async def raise_consumer_limit(js: JetStreamContext, stream: str) -> None:
    """Let a stream have MAX_CONSUMERS consumers.

    nats-server 2.15 caps every stream at 1,000 consumers unless the stream sets its own limit
    (and -1 no longer means unlimited). Every list and watch is an ephemeral consumer, and a
    thousand node agents listing at once would hit that cap.
    """
    info = await js.stream_info(stream)
    if (info.config.max_consumers or 0) < MAX_CONSUMERS:
        info.config.max_consumers = MAX_CONSUMERS
        try:
            await js.update_stream(info.config)
        except nats.js.errors.APIError as err:  # e.g. a read-only user: reading still works
            log.warning("could not raise the consumer limit of %s: %s", stream, err)


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
