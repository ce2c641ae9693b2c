"""Following a JetStream stream in order across reconnects: the reader under every watch.

A watch reads through an ordered consumer: ephemeral, in memory, on one server. After the server
restarts it is gone, and nats-py's ordered consumer only notices once two idle heartbeats went
missing (checked every 10 s): watches stalled 10 to 20 s after every restart. So a watch does not
wait to notice. When the connection comes back (`Link.on_reconnect`), it drops its consumer and
starts a new one at the stream sequence after the last message it delivered; the stream still holds
everything after that point (for a KV bucket: every key changed since, at its latest revision, and
the delete markers), so nothing is missed and nothing comes twice. Within one connection, nats-py's
ordered consumer still handles flow control and sequence gaps, and its heartbeat check (on a short
heartbeat) remains the backstop for a consumer lost without a reconnect (a cluster peer that died).

In a cluster, a consumer reads the copy of the stream on the server JetStream placed it on, which
may be a server still catching up after a restart: its "nothing pending" is that server's. So a
follower is caught up only once it has delivered the last message the stream's leader had on its
subject when the consumer was made; short of that, it drops the consumer and reads on from a new
one (after a moment, with back-off) instead of ending a listing with what one server had.

Besides messages, a follower yields markers: LOST when the connection drops (what was delivered
may be stale from now on), CAUGHT_UP when nothing is pending (after the first listing, and again
after each resume), and RESTARTED when it was away too long to resume and starts over from the
beginning. A one-shot follower (a listing) ends at its first CAUGHT_UP and fails with Unavailable
if the connection drops meanwhile. A follower ends with ConnectionClosed when the connection is
closed for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncGenerator
from datetime import datetime
from enum import Enum

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bus.backoff import Backoff
from bus.connection import ConnectionClosed, link
from bus.errors import Forbidden, SteerError, Unavailable
from bus.failures import translate

log = logging.getLogger(__name__)

# Once unsubscribed, the server drops a consumer after this long. Nothing resumes an old consumer
# (a resume starts a new one), so this only bounds how long abandoned ones linger.
ONE_SHOT_CONSUMER_TTL = 2.0
FOLLOW_CONSUMER_TTL = 10.0
# nats-py resets an ordered consumer after two heartbeats without a word from it.
HEARTBEAT = 2.0
_DELIVERS_LAST = (DeliverPolicy.ALL, DeliverPolicy.LAST_PER_SUBJECT)
# Streams whose leader a connection's permissions do not let it ask (see `_leader_last`).
_may_not_ask: weakref.WeakKeyDictionary[NATS, set[str]] = weakref.WeakKeyDictionary()


class NamedConsumer(ConsumerConfig):
    """A consumer config named after its deliver subject (a fresh inbox, so a fresh name).

    A named consumer is created on `$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>`, and
    nats-server checks the filter in the body against the subject: so NATS permissions can
    confine a reader to the subjects (KV keys of a namespace) it may read. nats-py's ordered
    consumer makes a new consumer after a gap by setting a new deliver subject and sending the
    same config: the name changes with it, so the new consumer never clashes with the old."""

    def __setattr__(self, field: str, value: object) -> None:
        super().__setattr__(field, value)
        if field == "deliver_subject" and isinstance(value, str) and value:
            super().__setattr__("name", value.rsplit(".", 1)[-1])


class Marker(Enum):
    LOST = "lost"
    CAUGHT_UP = "caught-up"
    RESTARTED = "restarted"


LOST = Marker.LOST
CAUGHT_UP = Marker.CAUGHT_UP
RESTARTED = Marker.RESTARTED


async def follow(
    js: JetStreamContext,
    *,
    stream: str,
    subject: str,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
    start_time: datetime | None = None,
    one_shot: bool = False,
    resume_within: float | None = None,
) -> AsyncGenerator[Msg | Marker, None]:
    """The stream's messages on `subject` in order, from `deliver_policy`, then live ones (until
    CAUGHT_UP only, if `one_shot`), resuming after the last one delivered whenever the connection
    comes back. See the module docstring for the markers.

    With `resume_within`, a follower that was away longer than that many seconds does not resume:
    it yields RESTARTED and starts over from `deliver_policy` (the stream may have dropped what it
    would have needed, such as the markers of expired KV entries)."""
    # The JetStream context has no public accessor for its connection.
    state = link(js._nc)
    changed = asyncio.Event()
    state.on_reconnect(changed.set)
    state.on_disconnect(changed.set)
    state.on_close(changed.set)
    last = 0  # stream sequence of the last message delivered
    sub: JetStreamContext.PushSubscription | None = None
    generation = state.generation
    behind = True  # not caught up yet (or since the last LOST)
    told_lost = False
    started = False  # the first consumer was made
    lost_at: float | None = None  # when the connection dropped (loop time)
    loop = asyncio.get_running_loop()
    retry = Backoff(first=0.05, cap=1.0)
    target = 0  # the leader's last sequence on `subject` when the consumer was made
    lagging = Backoff(first=0.05, cap=1.0)
    try:
        while True:
            changed.clear()
            if state.closed.is_set():
                raise ConnectionClosed(state)
            if sub is not None and (generation != state.generation or not state.connected.is_set()):
                await _drop(sub)  # its consumer may be gone, or still pushing into an old inbox
                sub = None
            if not state.connected.is_set():
                if one_shot:
                    raise Unavailable("lost the connection to NATS while reading")
                if lost_at is None:
                    lost_at = loop.time()
                if not told_lost:
                    told_lost, behind = True, True
                    yield LOST
                await changed.wait()
                continue
            if sub is None:
                generation = state.generation
                if last and lost_at is not None and resume_within is not None:
                    if loop.time() - lost_at > resume_within:
                        last, lost_at = 0, None  # too long away to resume: start over
                        yield RESTARTED
                try:
                    # Only where the consumer must deliver the last message: from the start, the
                    # last of each subject, or on after what it delivered (not from a time).
                    checked = bool(last) or deliver_policy in _DELIVERS_LAST
                    target = await _leader_last(js, stream, subject) if checked else 0
                    sub, pending = await _subscribe(
                        js,
                        stream=stream,
                        subject=subject,
                        after=last,
                        deliver_policy=deliver_policy,
                        start_time=start_time,
                        one_shot=one_shot,
                    )
                except SteerError as err:
                    if not started:
                        raise  # the first attempt: the caller learns at once
                    # Resuming: JetStream may need a moment after a server restart. The watch
                    # is stale meanwhile, and says so.
                    if not told_lost:
                        told_lost, behind = True, True
                        yield LOST
                    log.info("resuming a watch on %s failed (%s); retrying", subject, err.message)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), retry.next())
                    continue
                retry.reset()
                started, lost_at = True, None
                if pending == 0 and behind:
                    if last < target:
                        await _read_elsewhere(sub, lagging, changed, subject)
                        sub = None
                        continue
                    behind, told_lost = False, False
                    lagging.reset()
                    yield CAUGHT_UP
                    if one_shot:
                        return
                continue
            try:
                msg = await _next(sub, changed)
            except SteerError:
                if state.closed.is_set() or not state.connected.is_set():
                    continue  # the connection went: see above
                raise
            if msg is None:
                continue  # the connection changed: see above
            last = msg.metadata.sequence.stream
            yield msg
            if behind and msg.metadata.num_pending == 0:
                if last < target:
                    await _read_elsewhere(sub, lagging, changed, subject)
                    sub = None
                    continue
                behind, told_lost = False, False
                lagging.reset()
                yield CAUGHT_UP
                if one_shot:
                    return
    finally:
        state.forget(changed.set)
        if sub is not None:
            await _drop(sub)


async def _leader_last(js: JetStreamContext, stream: str, subject: str) -> int:
    """The last sequence on `subject` as the stream's leader has it (0 if none): a follower is
    caught up only once it has delivered that one. 0 too for a reader whose permissions confine
    it to some subjects: the leader's message get does not name the subject, so it may not ask
    (it trusts its consumer, as before)."""
    refused = _may_not_ask.setdefault(js._nc, set())
    if stream in refused:
        return 0
    try:
        return (await js.get_last_msg(stream, subject)).seq or 0
    except nats.js.errors.NotFoundError:
        return 0
    except Forbidden:
        refused.add(stream)  # asked once per connection: every refusal is a line in two logs
        return 0
    except (TimeoutError, nats.errors.Error) as err:
        raise translate(err) from err


async def _read_elsewhere(
    sub: JetStreamContext.PushSubscription, lagging: Backoff, changed: asyncio.Event, subject: str
) -> None:
    """Drop a consumer that says it has delivered everything while the stream's leader has more.

    In a cluster, a consumer reads the copy of the stream on the server it was placed on, and
    JetStream may place it on a server still catching up after a restart: its "nothing pending"
    is that server's, and a listing that trusted it would miss what the server has not got yet.
    A new consumer, made after a moment, goes on after the last message delivered."""
    await _drop(sub)
    log.info("a watch on %s was served by a replica behind the stream leader; reading on elsewhere", subject)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(changed.wait(), lagging.next())


async def _subscribe(
    js: JetStreamContext,
    *,
    stream: str,
    subject: str,
    after: int,
    deliver_policy: DeliverPolicy,
    start_time: datetime | None,
    one_shot: bool,
) -> tuple[JetStreamContext.PushSubscription, int]:
    """A new ordered consumer, from the start or right after sequence `after`; and how many
    messages it has to deliver before it is caught up."""
    config = NamedConsumer(
        deliver_subject=js._nc.new_inbox(),
        filter_subject=subject,
        ack_policy=AckPolicy.NONE,
        max_deliver=1,
        flow_control=True,
        idle_heartbeat=HEARTBEAT,
        mem_storage=True,
        num_replicas=1,
        inactive_threshold=ONE_SHOT_CONSUMER_TTL if one_shot else FOLLOW_CONSUMER_TTL,
    )
    if after:
        config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, after + 1
    else:
        config.deliver_policy, config.opt_start_time = deliver_policy, start_time
    try:
        info = await js.add_consumer(stream, config)
        sub = await js.subscribe_bind(stream, config, info.name, ordered_consumer=True)
    except (TimeoutError, nats.errors.Error) as err:
        raise translate(err) from err
    return sub, info.num_pending or 0


async def _next(sub: JetStreamContext.PushSubscription, changed: asyncio.Event) -> Msg | None:
    """The next message, or None as soon as the connection's state changes."""
    if sub.pending_msgs:  # the common case while catching up: no race to set up
        return await _read(sub)
    reading = asyncio.ensure_future(_read(sub))
    waking = asyncio.ensure_future(changed.wait())
    try:
        await asyncio.wait((reading, waking), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waking.cancel()
        if not reading.done():
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, SteerError):
                await reading
    return reading.result() if reading.done() and not reading.cancelled() else None


async def _read(sub: JetStreamContext.PushSubscription) -> Msg:
    try:
        return await sub.next_msg(timeout=None)
    except (TimeoutError, nats.errors.Error) as err:
        raise translate(err) from err


async def _drop(sub: JetStreamContext.PushSubscription) -> None:
    with contextlib.suppress(nats.errors.Error):
        await sub.unsubscribe()


__all__ = ["CAUGHT_UP", "LOST", "RESTARTED", "Marker", "follow"]
