"""The API service: the only writer of the store.

Replicas share one NATS queue group, so each request reaches exactly one of them. Requests are
handled concurrently (a bounded number at a time; beyond that the subscription waits, which is
the backpressure), and events are recorded after the reply has gone out, so they never add to a
client's latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.micro.request import Request

from bus import events as bus_events
from bus import kinds, subjects
from bus import metrics as bus_metrics
from bus.backoff import Backoff
from bus.codec import encode
from bus.connection import Credentials, announce, close, connect, fail_when_closed
from bus.errors import AlreadyExists, BadRequest, Internal, NotFound, SteerError, Timeout, Unavailable
from bus.failures import translate
from bus.meta import ObjectMeta
from bus.protocol import CREATE_UID_HEADER, NODE_LEASE_NAMESPACE, SYSTEM_NAMESPACE, WARNING_HEADER
from bus.resources import Event, Namespace
from bus.store import Store, StoreConfig
from bus.unreadable import UnreadableReporter
from bus.validation import requests
from bus.validation.networking import DEFAULT_NODE_PORT_RANGE
from services.api import nodes, replies
from services.api.admission import requested_uid
from services.api.allocations import Allocations
from services.api.clusterips import ClusterIPs
from services.api.followup import Followup
from services.api.iprange import DEFAULT_SERVICE_CIDR, ServiceRange
from services.api.namespaces import NamespaceCache
from services.api.nodeports import NodePorts
from services.api.portrange import NodePortRange
from services.api.verbs import COMPONENT, Outcome, Verbs

log = logging.getLogger(__name__)

PREPARE_WITHIN = 60.0  # seconds the API tries to prepare the store before it gives up (and exits)

# How a request is handled: its subject, its body and the uid its client chose for a create.
Dispatch = Callable[[str, bytes, str], Awaitable[Outcome]]

MAX_IN_FLIGHT = 256
WARNING_TEXT_MAX = 2048  # a listing's warning names at most ten unreadable objects


@dataclass
class ApiConfig:
    servers: str = "nats://127.0.0.1:4222"
    credentials: Credentials = field(default_factory=Credentials)
    store: StoreConfig = field(default_factory=StoreConfig)
    event_retention: timedelta = bus_events.DEFAULT_RETENTION
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    service_range: ServiceRange = field(default_factory=lambda: ServiceRange.parse(DEFAULT_SERVICE_CIDR))
    node_port_range: NodePortRange = NodePortRange.parse(DEFAULT_NODE_PORT_RANGE)


class ApiServer:
    def __init__(self, nc: NATS, store: Store, tasks: asyncio.TaskGroup, config: ApiConfig) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=5.0)
        self.store = store
        self.namespaces = NamespaceCache(store)
        self.clusterips = ClusterIPs(store, config.service_range)
        self.nodeports = NodePorts(store, config.node_port_range)
        allocations = Allocations(self.clusterips, self.nodeports)
        self.verbs = Verbs(store, self.namespaces, allocations, max_payload=nc.max_payload)
        self.followup = Followup(nc, self.js, store)
        self.tasks = tasks
        self.slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.handlers: dict[str, Callable[[kinds.KindInfo, str, bytes], Awaitable[Outcome]]] = {
            "get": self.verbs.get,
            "list": self.verbs.list_objects,
            "update": self.verbs.update,
            "patch": self.verbs.patch,
            "delete": self.verbs.delete,
            "status": self.verbs.status,
        }

    async def on_request(self, request: Request) -> None:
        """Admit the request and handle it in its own task, so slow ones don't hold up the rest."""
        await self.slots.acquire()
        self.tasks.create_task(self._serve(request, self.dispatch))

    async def on_node_request(self, request: Request) -> None:
        await self.slots.acquire()
        self.tasks.create_task(self._serve(request, self.dispatch_node))

    async def _serve(self, request: Request, dispatch: Dispatch) -> None:
        """One request, start to finish. Nothing may escape: an exception here would end the
        task group, and with it the API."""
        try:
            outcome = await self._answer(request, dispatch)
        finally:
            self.slots.release()
        if outcome is not None:
            await self.followup.run(outcome)

    async def _answer(self, request: Request, dispatch: Dispatch) -> Outcome | None:
        """Handle the request and reply; the outcome, or None when it failed (the error is the reply)."""
        try:
            uid = requested_uid((request.headers or {}).get(CREATE_UID_HEADER, ""))
            outcome = await dispatch(request.subject, request.data, uid)
        except SteerError as err:
            await replies.reply_error(request, err)
            return None
        except Exception as err:  # a bug must not take the API down: answer 500 and log it
            log.exception("unhandled error on %s", request.subject)
            await replies.reply_error(request, Internal(f"internal error: {type(err).__name__}"))
            return None
        # One line: a header value cannot hold a line break.
        warning = " ".join("; ".join(outcome.warnings).split())
        headers = {WARNING_HEADER: replies.header_text(warning, WARNING_TEXT_MAX)} if warning else None
        # Whether or not the reply goes out, what was written was written: follow it up.
        await replies.reply(request, outcome.reply, max_payload=self.nc.max_payload, headers=headers)
        return outcome

    async def dispatch(self, subject: str, body: bytes, uid: str = "") -> Outcome:
        verb, plural, namespace = subjects.parse_api(subject)
        _check_namespace(namespace)
        return await self._handle(verb, plural, namespace, body, uid)

    async def dispatch_node(self, subject: str, body: bytes, uid: str = "") -> Outcome:
        """A node agent's request: the node-restriction rules first, then the same verbs."""
        node, verb, plural, namespace = subjects.parse_node(subject)
        requests.check("invalid request subject", requests.node_token(node))
        _check_namespace(namespace)
        info = self._kind(plural)
        body = await nodes.admit(self.store, node, verb, info, namespace if info.namespaced else "", body)
        outcome = await self._handle(verb, plural, namespace, body, uid)
        if verb == "status":
            outcome.written = False  # the agent knows its own status; do not echo it back
        return outcome

    def _kind(self, plural: str) -> kinds.KindInfo:
        info = kinds.BY_PLURAL.get(plural)
        if info is None:
            raise NotFound(f'the server could not find the requested resource "{plural}"')
        return info

    async def _handle(self, verb: str, plural: str, namespace: str, body: bytes, uid: str = "") -> Outcome:
        info = self._kind(plural)
        handler = self.handlers.get(verb)
        if handler is None and verb != "create":
            raise NotFound(f'unknown verb "{verb}"')
        _check_scope(info, verb, namespace)
        scope = namespace if info.namespaced else ""
        if handler is None:
            outcome = await self.verbs.create(info, scope, body, uid=uid)
        else:
            outcome = await handler(info, scope, body)
            await self.verbs.release_allocations(outcome)
        if (
            info.kind == "Event"
            and outcome.written
            and not outcome.deleted
            and isinstance(outcome.reply, Event)
        ):
            # On the stream before the reply, so whoever created it reads it there at once; if the
            # stream does not take it now, the follow-up tries again after the reply.
            if not await self.followup.publish_once(outcome.reply):
                outcome.stream.append(outcome.reply)
        return outcome

    async def record_unreadable(self, event: Event) -> None:
        """Store and publish the Warning event about a value that cannot be read; AlreadyExists
        when another component recorded it first (its name is derived from the key)."""
        stored = await self.store.create(event)
        if not await self.followup.publish_once(stored):
            raise Unavailable(f"the events stream did not take event {stored.metadata.name}")

    async def seed(self) -> None:
        """The namespaces every cluster starts with."""
        for name in ("default", NODE_LEASE_NAMESPACE, SYSTEM_NAMESPACE):
            with contextlib.suppress(AlreadyExists):
                await self.verbs.create(
                    kinds.BY_KIND["Namespace"], "", encode(Namespace(metadata=ObjectMeta(name=name)))
                )


async def _prepare_store(js: JetStreamContext, store: Store, config: ApiConfig) -> None:
    """Create the buckets and streams, or bring them up to date. API replicas starting together
    race to create them, and in a cluster the meta leader may leave one of two creates of the
    same stream unanswered (it times out): the loser tries again and finds the stream made."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + PREPARE_WITHIN
    retry = Backoff(first=0.2, cap=2.0)
    while True:
        try:
            await store.ensure_buckets()
            await bus_events.ensure_stream(
                js, retention=config.event_retention, replicas=config.store.replicas
            )
            await bus_metrics.ensure_stream(js, replicas=config.store.replicas)
            return
        except (SteerError, TimeoutError, nats.errors.Error) as err:
            failure = translate(err)  # the streams' own helpers raise nats-py's errors
            if not isinstance(failure, Timeout | Unavailable) or loop.time() >= give_up:
                raise failure from err
            log.info("preparing the store: %s; trying again", failure.message)
            await asyncio.sleep(retry.next())


def _check_scope(info: kinds.KindInfo, verb: str, namespace: str) -> None:
    """The namespace token must say exactly what the request is about, since NATS permissions
    authorize by it: `_` for a cluster-scoped kind and nothing else (a user allowed
    `steer.api.delete.*.mine` must not reach namespace "victim" through
    `steer.api.delete.namespaces.mine`); one namespace for a namespaced kind, or `_all` for a list."""
    if not info.namespaced:
        if namespace != "":
            shown = subjects.scope(namespace)
            raise BadRequest(
                f"{info.plural} are cluster-scoped: the namespace token of the subject must be "
                f'"{subjects.CLUSTER_SCOPE}", not "{shown}"'
            )
    elif namespace == "" or (namespace == subjects.ALL and verb != "list"):
        raise BadRequest(
            f"{info.plural} are namespaced: the namespace token of the subject must name one namespace"
            + (f' (or "{subjects.ALL_NAMESPACES}" for a list)' if verb == "list" else "")
            + f', not "{subjects.scope(namespace or None)}"'
        )


def _check_namespace(namespace: str) -> None:
    """The namespace token of a subject goes into keys and subjects: it must be a namespace name."""
    if namespace != subjects.ALL:
        requests.check("invalid request subject", requests.namespace_token(namespace))


async def run(config: ApiConfig, *, ready: asyncio.Event | None = None) -> None:
    """Serve the API until cancelled."""
    nc = await connect(
        config.servers, name=f"steer-api {config.instance}", credentials=config.credentials, wait=True
    )
    try:
        js = nc.jetstream(timeout=5.0)
        store = Store(js, config.store)
        await _prepare_store(js, store, config)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(fail_when_closed(nc))
            server = ApiServer(nc, store, tasks, config)
            reporter = UnreadableReporter(server.record_unreadable, component=COMPONENT)
            store.on_unreadable(reporter)
            tasks.create_task(reporter.run())
            tasks.create_task(server.namespaces.run())
            tasks.create_task(server.clusterips.run())
            tasks.create_task(server.nodeports.run())
            await server.seed()
            service = await announce(
                nc, "api", description="steersman API server", metadata={"instance": config.instance}
            )
            for verb in subjects.API_VERBS:
                await service.add_endpoint(
                    name=verb,
                    subject=subjects.api_listen(verb),
                    queue_group=subjects.API_QUEUE_GROUP,
                    handler=server.on_request,
                )
            await service.add_endpoint(
                name="node",
                subject=subjects.node_listen(),
                queue_group=subjects.API_QUEUE_GROUP,
                handler=server.on_node_request,
            )
            with contextlib.suppress(TimeoutError, nats.errors.Error):  # a blip: they stand anyway
                await nc.flush()  # the server has our subscriptions before we say we serve
            log.info("API %s serving on %s", config.instance, config.servers)
            if ready is not None:
                ready.set()
            try:
                await asyncio.Event().wait()
            finally:
                with contextlib.suppress(nats.errors.Error):  # the bus may be gone already
                    await service.stop()
    finally:
        await close(nc)
