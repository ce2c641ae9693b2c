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

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.micro.request import Request

from bus import events as bus_events
from bus import kinds, subjects
from bus import metrics as bus_metrics
from bus.codec import encode
from bus.connection import Credentials, announce, close, connect
from bus.errors import AlreadyExists, BadRequest, Internal, NotFound, SteerError
from bus.meta import ObjectMeta
from bus.protocol import (
    ERROR_CODE_HEADER,
    ERROR_HEADER,
    FEED_EVENT_HEADER,
    NODE_LEASE_NAMESPACE,
    SYSTEM_NAMESPACE,
)
from bus.resources import Endpoints, Event, Namespace, Pod, Service
from bus.store import Store, StoreConfig
from bus.validation import requests
from services.api import bodies, nodes
from services.api.namespaces import NamespaceCache
from services.api.verbs import Outcome, Verbs

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 256


@dataclass
class ApiConfig:
    servers: str = "nats://127.0.0.1:4222"
    credentials: Credentials = field(default_factory=Credentials)
    store: StoreConfig = field(default_factory=StoreConfig)
    event_retention: timedelta = bus_events.DEFAULT_RETENTION
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")


class ApiServer:
    def __init__(self, nc: NATS, store: Store, tasks: asyncio.TaskGroup) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=5.0)
        self.store = store
        self.namespaces = NamespaceCache(store)
        self.verbs = Verbs(store, self.namespaces, object_limit=bodies.object_limit(nc.max_payload))
        self.tasks = tasks
        self.slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.handlers: dict[str, Callable[[kinds.KindInfo, str, bytes], Awaitable[Outcome]]] = {
            "create": self.verbs.create,
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

    async def _serve(self, request: Request, dispatch: Callable[[str, bytes], Awaitable[Outcome]]) -> None:
        try:
            outcome = await dispatch(request.subject, request.data)
        except SteerError as err:
            await _respond_error(request, err)
            return
        except Exception as err:  # a bug must not take the API down: answer 500 and log it
            log.exception("unhandled error on %s", request.subject)
            await _respond_error(request, Internal(f"internal error: {type(err).__name__}"))
            return
        finally:
            self.slots.release()
        with contextlib.suppress(Exception):
            await request.respond(encode(outcome.reply))
        for done in outcome.all():
            await self.feed(done)
            await self.record(done.events)

    async def dispatch(self, subject: str, body: bytes) -> Outcome:
        verb, plural, namespace = subjects.parse_api(subject)
        _check_namespace(namespace)
        return await self._handle(verb, plural, namespace, body)

    async def dispatch_node(self, subject: str, body: bytes) -> Outcome:
        """A node agent's request: the node-restriction rules first, then the same verbs."""
        node, verb, plural, namespace = subjects.parse_node(subject)
        requests.check("invalid request subject", requests.node_token(node))
        _check_namespace(namespace)
        info = self._kind(plural)
        body = await nodes.admit(self.store, node, verb, info, namespace if info.namespaced else "", body)
        outcome = await self._handle(verb, plural, namespace, body)
        if verb == "status":
            outcome.written = False  # the agent knows its own status; do not echo it back
        return outcome

    def _kind(self, plural: str) -> kinds.KindInfo:
        info = kinds.BY_PLURAL.get(plural)
        if info is None:
            raise NotFound(f'the server could not find the requested resource "{plural}"')
        return info

    async def _handle(self, verb: str, plural: str, namespace: str, body: bytes) -> Outcome:
        info = self._kind(plural)
        handler = self.handlers.get(verb)
        if handler is None:
            raise NotFound(f'unknown verb "{verb}"')
        if verb != "list" and info.namespaced and namespace in ("", subjects.ALL):
            raise BadRequest(f"{info.plural} are namespaced: the subject must name one namespace")
        outcome = await handler(info, namespace if info.namespaced else "", body)
        if info.kind == "Event" and verb in ("create", "update") and isinstance(outcome.reply, Event):
            await self.publish_events([outcome.reply])
        return outcome

    async def feed(self, outcome: Outcome) -> None:
        """Tell the node a changed pod is bound to, and every node of a changed Service or
        Endpoints (their proxies serve them). Agents re-list now and then, so a lost message
        only delays a change."""
        obj = outcome.reply
        if not outcome.written:
            return
        if isinstance(obj, Pod) and obj.spec.node_name:
            subject = subjects.node_feed(obj.spec.node_name)
        elif isinstance(obj, Service | Endpoints):
            subject = subjects.cluster_feed(kinds.of(obj).plural)
        else:
            return
        event = "DELETED" if outcome.deleted else "MODIFIED"
        with contextlib.suppress(Exception):
            await self.nc.publish(subject, encode(obj), headers={FEED_EVENT_HEADER: event})

    async def record(self, events: list[Event]) -> None:
        """Store lifecycle events and publish them to the events stream; failures are only logged."""
        for event in events:
            try:
                stored = await self.store.create(event)
                await self.publish_events([stored])
            except SteerError as err:
                log.warning("could not record event %s: %s", event.reason, err)

    async def publish_events(self, events: list[Event]) -> None:
        for event in events:
            await self.js.publish(bus_events.subject_of(event), encode(event))

    async def seed(self) -> None:
        """The namespaces every cluster starts with."""
        for name in ("default", NODE_LEASE_NAMESPACE, SYSTEM_NAMESPACE):
            with contextlib.suppress(AlreadyExists):
                await self.verbs.create(
                    kinds.BY_KIND["Namespace"], "", encode(Namespace(metadata=ObjectMeta(name=name)))
                )


def _check_namespace(namespace: str) -> None:
    """The namespace token of a subject goes into keys and subjects: it must be a namespace name."""
    if namespace != subjects.ALL:
        requests.check("invalid request subject", requests.namespace_token(namespace))


async def _respond_error(request: Request, err: SteerError) -> None:
    headers = {ERROR_CODE_HEADER: str(err.code), ERROR_HEADER: err.message[:200]}
    with contextlib.suppress(Exception):
        await request.respond(msgspec.json.encode(err.to_status()), headers=headers)


async def run(config: ApiConfig, *, ready: asyncio.Event | None = None) -> None:
    """Serve the API until cancelled."""
    nc = await connect(config.servers, name=f"steer-api {config.instance}", credentials=config.credentials)
    try:
        js = nc.jetstream(timeout=5.0)
        store = Store(js, config.store)
        await store.ensure_buckets()
        await bus_events.ensure_stream(js, retention=config.event_retention, replicas=config.store.replicas)
        await bus_metrics.ensure_stream(js, replicas=config.store.replicas)
        async with asyncio.TaskGroup() as tasks:
            server = ApiServer(nc, store, tasks)
            tasks.create_task(server.namespaces.run())
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
            await nc.flush()
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
