"""What the API does once a request is answered: feed node agents, record and publish events.

This work runs after the reply has gone out, so it never adds to a client's latency, and it can
never fail the request: a failure here is logged and retried a bounded number of times, never
raised. (An exception escaping it would end the API's task group, and so the API.) Node agents
re-list now and then, so a lost feed message only delays a change; an event that cannot be
recorded after every attempt is logged and dropped, as Kubernetes drops events it cannot write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from bus import events as bus_events
from bus import kinds, subjects
from bus.codec import encode
from bus.errors import AlreadyExists, SteerError, Timeout, Unavailable
from bus.meta import Resource
from bus.podview import network_view
from bus.protocol import FEED_EVENT_HEADER
from bus.resources import Endpoints, Event, Pod, Service
from bus.store import Store
from services.api.verbs import Outcome

log = logging.getLogger(__name__)

# Attempts at each step, and the pause before each retry: about 3.5 s of pauses in all, plus
# the timeouts of the attempts themselves.
RETRY_DELAYS = (0.5, 1.0, 2.0)

TRANSIENT = (SteerError, nats.errors.Error, TimeoutError, OSError)


class Followup:
    def __init__(self, nc: NATS, js: JetStreamContext, store: Store) -> None:
        self.nc = nc
        self.js = js
        self.store = store

    async def run(self, outcome: Outcome) -> None:
        """Everything a served request leaves to do. Never raises (except cancellation)."""
        for done in outcome.all():
            try:
                await self.feed(done)
                for event in done.events:
                    await self.record(event)
                for event in done.stream:
                    await self.publish(event)
            except Exception:  # a bug here must not end the API: it has replied already
                log.exception("follow-up of a request failed")

    async def feed(self, outcome: Outcome) -> None:
        """Tell the node a changed pod is bound to, every node of a changed Service or Endpoints
        (their proxies serve them), and every node of a changed pod's network view (their
        NetworkPolicy enforcers need every pod's address and labels)."""
        obj = outcome.reply
        if not outcome.written:
            return
        messages: list[tuple[str, Resource]] = []
        if isinstance(obj, Pod):
            if obj.spec.node_name:
                messages.append((subjects.node_feed(obj.spec.node_name), obj))
            messages.append((subjects.cluster_feed("pods"), network_view(obj)))
        elif isinstance(obj, Service | Endpoints):
            messages.append((subjects.cluster_feed(kinds.of(obj).plural), obj))
        event = "DELETED" if outcome.deleted else "MODIFIED"
        for subject, message in messages:
            try:
                await self.nc.publish(subject, encode(message), headers={FEED_EVENT_HEADER: event})
            except TRANSIENT as err:
                log.warning("could not feed %s: %s", subject, err or type(err).__name__)

    async def record(self, event: Event) -> None:
        """Store a lifecycle event, then publish it to the events stream."""
        stored = await self._attempt(f"store event {event.metadata.name}", self._create, event)
        if stored is not None:
            await self.publish(stored)

    async def publish(self, event: Event) -> None:
        """Put a stored event on the events stream (`steer events`, `steer describe` read it)."""
        await self._attempt(f"publish event {event.metadata.name}", self._publish, event)

    async def publish_once(self, event: Event) -> bool:
        """One attempt at `publish`, for the request itself: whether the stream took the event."""
        try:
            await self._publish(event)
        except TRANSIENT as err:
            log.warning(
                "could not publish event %s (%s); trying again after the reply", event.metadata.name, err
            )
            return False
        return True

    async def _create(self, event: Event) -> Event:
        try:
            return await self.store.create(event)
        except AlreadyExists:  # an earlier attempt did store it, and timed out only on the answer
            return event

    async def _publish(self, event: Event) -> Event:
        await self.js.publish(bus_events.subject_of(event), encode(event))
        return event

    async def _attempt(
        self, what: str, step: Callable[[Event], Awaitable[Event]], event: Event
    ) -> Event | None:
        """`step(event)` until it succeeds, at most len(RETRY_DELAYS) + 1 times."""
        for attempt, delay in enumerate((*RETRY_DELAYS, None), start=1):
            try:
                return await step(event)
            except TRANSIENT as err:
                reason = str(err) or type(err).__name__
                if isinstance(err, SteerError) and not isinstance(err, Unavailable | Timeout):
                    log.error("could not %s: %s", what, reason)  # not something a retry mends
                    return None
                if delay is None:
                    log.error("could not %s after %d attempts (%s); dropping it", what, attempt, reason)
                    return None
                log.warning("could not %s (%s); trying again in %gs", what, reason, delay)
            await asyncio.sleep(delay)
        return None
