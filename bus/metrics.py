"""Resource and request metrics: what node agents and service proxies publish, and who reads them.

Every node agent publishes a `NodeMetrics` on `steer.metrics.node.<node>` every interval, and every
service proxy a `ProxyMetrics` on `steer.metrics.proxy.<node>`, each interval even when nothing
happened (an idle proxy publishes an empty `services` list: "no requests" is a measurement too).
These are plain core-NATS publishes (agents have no JetStream access); the STEER_METRICS stream,
which the API server creates, captures them and keeps only the latest message of each subject, so
`steer top` reads the current state at once and the autoscaler catches up after a restart.
docs/protocol.md ("Metrics") is the contract.

Quantities are plain integers (millicores, bytes, counts) so any client can read them without a
Kubernetes quantity parser. Pod memory is the working set (usage minus inactive file cache), as
Kubernetes' metrics-server reports it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, DiscardPolicy, StorageType, StreamConfig

from bus import subjects
from bus.following import NamedConsumer
from bus.meta import Base
from bus.store import MAX_CONSUMERS, ONE_SHOT_CONSUMER_TTL, translate

log = logging.getLogger(__name__)
T = TypeVar("T")

# Long enough for any sensible publishing interval; a node gone for good drops out after it.
RETENTION = timedelta(minutes=10)
# How far a reader's clock may be from a publisher's before a fresh sample looks stale.
CLOCK_SLACK = 10.0


class ContainerMetrics(Base):
    name: str
    cpu_millicores: int
    memory_bytes: int


class PodMetrics(Base):
    namespace: str
    name: str
    uid: str
    cpu_millicores: int  # summed over the pod's containers
    memory_bytes: int
    containers: list[ContainerMetrics] = []


class NodeMetrics(Base):
    """One node's usage, averaged over the `window_seconds` ending at `timestamp`."""

    node: str
    timestamp: datetime
    window_seconds: float
    cpu_millicores: int  # the whole node (host) as the runtime sees it
    memory_bytes: int
    pods: list[PodMetrics] = []


class EndpointRequests(Base):
    """Connections one proxy sent to one endpoint pod of a Service during the window."""

    pod_name: str
    requests: int
    pod_uid: str = ""


class ServiceRequests(Base):
    """Connections one proxy accepted for a Service during the window (each one is a request
    for a TCP proxy), and how it spread them over the Service's endpoint pods."""

    namespace: str
    name: str
    requests: int
    endpoints: list[EndpointRequests] = []


class ProxyMetrics(Base):
    node: str
    timestamp: datetime
    window_seconds: float
    services: list[ServiceRequests] = []


_node_decoder = msgspec.json.Decoder(NodeMetrics)
_proxy_decoder = msgspec.json.Decoder(ProxyMetrics)
_encoder = msgspec.json.Encoder()


def encode(metrics: NodeMetrics | ProxyMetrics) -> bytes:
    return _encoder.encode(metrics)


def decode_node(data: bytes) -> NodeMetrics:
    return _node_decoder.decode(data)


def decode_proxy(data: bytes) -> ProxyMetrics:
    return _proxy_decoder.decode(data)


def is_fresh(metrics: NodeMetrics | ProxyMetrics, *, now: datetime | None = None) -> bool:
    """Whether a sample still describes the present: it was taken less than three publishing
    intervals ago (so one lost message does not blank a node), give or take clock skew."""
    age = ((now or datetime.now(UTC)) - metrics.timestamp).total_seconds()
    return age <= 3 * metrics.window_seconds + CLOCK_SLACK


async def ensure_stream(js: JetStreamContext, *, replicas: int = 1) -> None:
    """Create the metrics stream if it is missing. Memory storage: samples are worth nothing
    after a minute, and every node writes one every few seconds (no disk sync for them)."""
    config = StreamConfig(
        name=subjects.METRICS_STREAM,
        subjects=[subjects.metrics_all()],
        max_msgs_per_subject=1,
        max_age=RETENTION.total_seconds(),
        discard=DiscardPolicy.OLD,
        storage=StorageType.MEMORY,
        num_replicas=replicas,
        description="steersman metrics: the latest sample of each node and proxy",
        max_consumers=MAX_CONSUMERS,
    )
    try:
        await js.stream_info(subjects.METRICS_STREAM)
    except nats.js.errors.NotFoundError:
        with contextlib.suppress(nats.js.errors.BadRequestError):  # lost a creation race: fine
            await js.add_stream(config)


async def latest(js: JetStreamContext, subject_filter: str) -> list[bytes]:
    """The newest message of every subject matching `subject_filter` that the stream holds."""
    config = NamedConsumer(
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, inactive_threshold=ONE_SHOT_CONSUMER_TTL
    )
    try:
        sub = await js.subscribe(
            subject_filter, stream=subjects.METRICS_STREAM, ordered_consumer=True, config=config
        )
        info = await sub.consumer_info()
    except nats.js.errors.NotFoundError:
        return []  # no stream (an API server older than metrics): nothing was kept
    except (TimeoutError, nats.errors.Error) as err:
        raise translate(err) from err
    found: list[bytes] = []
    try:
        delivered = info.delivered.consumer_seq if info.delivered else 0
        if not info.num_pending and not delivered:
            return found
        async for msg in sub.messages:
            found.append(msg.data)
            if msg.metadata.num_pending == 0:
                break
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return found


async def latest_nodes(js: JetStreamContext) -> list[NodeMetrics]:
    """The latest sample of each node (malformed ones skipped)."""
    return _decode_all(await latest(js, subjects.metrics_filter("node")), decode_node)


async def latest_proxies(js: JetStreamContext) -> list[ProxyMetrics]:
    return _decode_all(await latest(js, subjects.metrics_filter("proxy")), decode_proxy)


def _decode_all(messages: list[bytes], decode: Callable[[bytes], T]) -> list[T]:
    found: list[T] = []
    for data in messages:
        try:
            found.append(decode(data))
        except msgspec.DecodeError:
            log.warning("malformed metrics message ignored")
    return found
