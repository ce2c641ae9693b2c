"""Events: building them, and reading the STEER_EVENTS stream live or from a point in time.

Every Event the API stores is also published on `steer.events.<namespace>.<Kind>.<name>`, which a
JetStream stream keeps for a retention window. Subject filters pick one namespace or one object,
so `steer events --for pod/web-1` and `steer describe` read only what they show.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, StorageType, StreamConfig

from bus import following, kinds, subjects
from bus.buckets import MAX_CONSUMERS
from bus.meta import ObjectMeta, ObjectReference, Resource
from bus.resources import Event
from bus.resources.records import EventSource

log = logging.getLogger(__name__)

DEFAULT_RETENTION = timedelta(hours=1)
_decoder = msgspec.json.Decoder(Event)


def now() -> datetime:
    return datetime.now(UTC)


def reference(obj: Resource) -> ObjectReference:
    return ObjectReference(
        api_version=obj.api_version,
        kind=obj.kind,
        namespace=obj.metadata.namespace,
        name=obj.metadata.name,
        uid=obj.metadata.uid,
        resource_version=obj.metadata.resource_version,
    )


def make_event(
    involved: ObjectReference,
    *,
    reason: str,
    message: str,
    type: str = "Normal",
    component: str,
    host: str = "",
) -> Event:
    """An Event about `involved`, named as Kubernetes names them (`<object>.<random hex>`)."""
    stamp = now()
    namespace = involved.namespace or "default"
    return Event(
        metadata=ObjectMeta(name=f"{involved.name}.{secrets.token_hex(8)}", namespace=namespace),
        involved_object=involved,
        reason=reason,
        message=message,
        type="Warning" if type == "Warning" else "Normal",
        source=EventSource(component=component, host=host),
        first_timestamp=stamp,
        last_timestamp=stamp,
        reporting_component=component,
        reporting_instance=host,
    )


def subject_of(event: Event) -> str:
    involved = event.involved_object
    info = kinds.BY_KIND.get(involved.kind)
    if info is not None and not info.namespaced:
        namespace = None  # cluster-scoped objects: `_`, whatever namespace the Event itself is in
    else:
        namespace = involved.namespace or event.metadata.namespace
    return subjects.events(namespace, involved.kind or "Unknown", involved.name)


async def ensure_stream(
    js: JetStreamContext, *, retention: timedelta = DEFAULT_RETENTION, replicas: int = 1
) -> None:
    """Create the events stream if it is missing. An existing stream keeps its settings, so a
    replica started with other flags never shrinks a production stream."""
    config = StreamConfig(
        name=subjects.EVENTS_STREAM,
        subjects=[subjects.events_all()],
        max_age=retention.total_seconds(),
        storage=StorageType.FILE,
        num_replicas=replicas,
        description="steersman events",
        max_consumers=MAX_CONSUMERS,
    )
    try:
        info = await js.stream_info(subjects.EVENTS_STREAM)
    except nats.js.errors.NotFoundError:
        with contextlib.suppress(nats.js.errors.BadRequestError):  # lost a creation race: fine
            await js.add_stream(config)
        return
    if info.config.max_age != config.max_age or info.config.num_replicas != replicas:
        log.info(
            "events stream exists with retention %ss and %s replicas; keeping them",
            info.config.max_age,
            info.config.num_replicas,
        )


async def read(
    js: JetStreamContext,
    *,
    subject_filter: str,
    since: timedelta | None = None,
    follow: bool = False,
) -> AsyncIterator[Event]:
    """Events oldest first from `since` ago (all retained when None); then live ones if `follow`.

    A follower resumes after the last event it delivered whenever the connection comes back
    (`bus.following`): none is missed while the stream still holds it, none comes twice. It ends
    with Unavailable only when the connection is closed for good.
    """
    messages = following.follow(
        js,
        stream=subjects.EVENTS_STREAM,
        subject=subject_filter,
        deliver_policy=DeliverPolicy.ALL if since is None else DeliverPolicy.BY_START_TIME,
        start_time=None if since is None else now() - since,
        one_shot=not follow,
    )
    async with contextlib.aclosing(messages):
        async for item in messages:
            if isinstance(item, following.Marker):
                continue
            with contextlib.suppress(msgspec.DecodeError):
                yield _decoder.decode(item.data)
