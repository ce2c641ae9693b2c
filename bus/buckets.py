"""The store's buckets: the API creates them, everyone else opens them.

A bucket's settings (replicas, history, storage, TTL) are the cluster's: they come from the API's
flags (`steer api --replicas 3`). If every user of the store created a missing bucket, the first
component to start would decide them, with its defaults (one replica). So only the API creates
buckets (`ensure`), and brings existing ones up to what this version needs; every other component
opens them and, if it starts before the API ever ran, waits for them (`wait`) with one log line.

Buckets with a TTL (leases, events) have the server mark an expired entry with a delete marker
(nats-server 2.11's subject delete markers), so that watches see it go. A marker lives as long as
the bucket's TTL; a watch away longer than that cannot know which entries expired meanwhile, so
it lists again instead of resuming (`Bucket.resume_within`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.kv import KeyValue

from bus import kinds, subjects
from bus.backoff import Backoff
from bus.errors import Timeout, Unavailable
from bus.failures import translate

log = logging.getLogger(__name__)

MAX_CONSUMERS = 100_000
DUPLICATE_WINDOW = 120.0  # seconds; nats-py's for a KV bucket (its TTL if shorter)
# A watch resumes only if it was away for less than this share of the marker TTL (the markers of
# entries that expired just before it left must still be there when it comes back).
RESUME_MARGIN = 0.9


@dataclass
class StoreConfig:
    """How the API creates buckets: replicas and history for all, a TTL for liveness-type kinds."""

    replicas: int = 1
    history: int = 1
    storage: StorageType = StorageType.FILE
    ttl: dict[str, float] = field(default_factory=lambda: {"leases": 600.0, "events": 3600.0})


@dataclass(frozen=True)
class Bucket:
    kv: KeyValue
    # How long a watch may be away and still resume (None: any time); see the module docstring.
    resume_within: float | None = None

    @property
    def name(self) -> str:
        return self.kv._name

    @property
    def stream(self) -> str:
        return self.kv._stream


class Buckets:
    def __init__(self, js: JetStreamContext, config: StoreConfig | None = None) -> None:
        self._js = js
        self._config = config or StoreConfig()
        self._open: dict[str, Bucket] = {}
        self._lock = asyncio.Lock()

    async def get(self, info: kinds.KindInfo) -> Bucket:
        """The kind's bucket; Unavailable if the API has not created it yet."""
        bucket = self._open.get(info.plural)
        if bucket is not None:
            return bucket
        async with self._lock:
            bucket = self._open.get(info.plural)
            if bucket is None:
                bucket = self._open[info.plural] = await self._opened(info)
        return bucket

    async def _opened(self, info: kinds.KindInfo) -> Bucket:
        name = subjects.bucket(info.plural)
        try:
            kv = await self._js.key_value(name)
            stream = await self._js.stream_info(kv._stream)
        except nats.js.errors.BucketNotFoundError:
            raise Unavailable(
                f"the store has no {info.plural} bucket ({name}) yet: the API creates it when it starts"
            ) from None
        except (TimeoutError, nats.errors.Error) as err:
            raise translate(err) from err
        marker_ttl = stream.config.subject_delete_marker_ttl
        return Bucket(kv, RESUME_MARGIN * marker_ttl if marker_ttl else None)

    async def ensure(self) -> None:
        """Create every missing bucket with the configured settings, and bring existing ones up to
        what this version needs (the API's job, and only its job)."""
        for info in kinds.KINDS:
            try:
                await self._create(info)
                await self._settle(info)
            except (TimeoutError, nats.errors.Error) as err:
                raise translate(err) from err

    async def _create(self, info: kinds.KindInfo) -> None:
        """Create the kind's bucket with every setting it needs at once. (nats-py's
        `create_key_value` leaves the consumer limit to be raised by an update: in a cluster, an
        update racing another API replica's create of the same stream leaves both unanswered.)"""
        ttl = self._config.ttl.get(info.plural)
        name = subjects.bucket(info.plural)
        config = StreamConfig(
            name=subjects.kv_stream(name),
            description=f"steersman {info.plural}",
            subjects=[subjects.kv_subject(name, ">")],
            allow_direct=True,
            allow_rollup_hdrs=True,
            allow_msg_ttl=True,
            deny_delete=True,
            discard=DiscardPolicy.NEW,
            duplicate_window=min(DUPLICATE_WINDOW, ttl or DUPLICATE_WINDOW),
            max_age=ttl,
            max_consumers=MAX_CONSUMERS,
            max_msgs=-1,
            max_msgs_per_subject=self._config.history,
            num_replicas=self._config.replicas,
            storage=self._config.storage,
            subject_delete_marker_ttl=ttl,
        )
        try:
            await self._js.add_stream(config)
        except nats.js.errors.BadRequestError:
            pass  # it exists (or another replica created it first): it keeps its settings

    async def _settle(self, info: kinds.KindInfo) -> None:
        """Settings a bucket made by an older version may lack. nats-server 2.15 caps a stream at
        1,000 consumers unless the stream sets its own limit, and every list and watch is a
        consumer: a thousand node agents listing at once would hit the cap. And a TTL bucket
        needs its delete markers (see the module docstring)."""
        stream = (await self._js.key_value(subjects.bucket(info.plural)))._stream
        current = await self._js.stream_info(stream)
        config = current.config
        ttl = self._config.ttl.get(info.plural)
        wanted_markers = config.max_age if ttl and config.max_age else None
        if (config.max_consumers or 0) >= MAX_CONSUMERS and (
            not wanted_markers or config.subject_delete_marker_ttl
        ):
            return
        config.max_consumers = MAX_CONSUMERS
        if wanted_markers and not config.subject_delete_marker_ttl:
            config.allow_msg_ttl, config.subject_delete_marker_ttl = True, wanted_markers
        try:
            await self._js.update_stream(config)
        except nats.js.errors.APIError as err:  # e.g. a read-only user: reading still works
            log.warning("could not update the settings of %s: %s", stream, err)

    async def wait(self) -> None:
        """Until every kind's bucket exists: a component started before the API ever ran."""
        retry = Backoff(first=0.1, cap=1.0)
        waiting = False
        for info in kinds.KINDS:
            while True:
                try:
                    await self.get(info)
                    break
                except (Unavailable, Timeout) as err:
                    if not waiting:
                        log.warning("%s; waiting for it", err.message)
                        waiting = True
                    await asyncio.sleep(retry.next())
        if waiting:
            log.info("the store's buckets are there")
