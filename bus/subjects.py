"""Every NATS subject, stream, bucket and key name steersman uses, and nothing else.

docs/protocol.md is the contract these functions implement; a controller in another language
can be written from it. Tokens:

    steer.api.<verb>.<plural>.<namespace>        request/reply to the API (`_` cluster scope, `_all` all)
    steer.node.<node>.<verb>.<plural>.<namespace> requests a node agent makes; the API trusts <node>
    steer.node.<node>.feed.pods                   the API tells a node of changes to its pods
    steer.feed.services | .endpoints              the API tells every node agent (its service proxy)
    steer.node.<node>.logs | .exec                served by the node agent itself
    steer.events.<namespace>.<Kind>.<name>       every Event, captured by the STEER_EVENTS stream
    steer.metrics.node.<node> | .proxy.<node>    usage a node agent / its service proxy publishes
                                                 (bus/metrics.py); STEER_METRICS keeps the latest of each

KV buckets are `steer-<plural>`; keys are `<namespace>.<name>`, `_.<name>` for cluster-scoped kinds,
so that every key has the same shape and `<namespace>.>` filters one namespace.
"""

from __future__ import annotations

from typing import Literal

PREFIX = "steer"
CLUSTER_SCOPE = "_"
ALL = "*"
# The namespace token of a list across every namespace. Not `*`: a published subject must not
# contain wildcards, and no namespace can be named `_all` (names are DNS labels).
ALL_NAMESPACES = "_all"

ApiVerb = Literal["create", "get", "list", "update", "patch", "delete", "status"]
API_VERBS: tuple[ApiVerb, ...] = ("create", "get", "list", "update", "patch", "delete", "status")
READ_VERBS: tuple[ApiVerb, ...] = ("get", "list")
API_QUEUE_GROUP = "steer-api"

EVENTS_STREAM = "STEER_EVENTS"
METRICS_STREAM = "STEER_METRICS"


def scope(namespace: str | None) -> str:
    if namespace == ALL:
        return ALL_NAMESPACES
    return namespace or CLUSTER_SCOPE


def unscope(token: str) -> str:
    """The namespace a subject token stands for: "" for cluster scope, `*` for all."""
    if token == ALL_NAMESPACES:
        return ALL
    return "" if token == CLUSTER_SCOPE else token


def api(verb: ApiVerb, plural: str, namespace: str | None) -> str:
    return f"{PREFIX}.api.{verb}.{plural}.{scope(namespace)}"


def api_listen(verb: ApiVerb) -> str:
    """What the API service subscribes to for one verb."""
    return f"{PREFIX}.api.{verb}.*.*"


def parse_api(subject: str) -> tuple[str, str, str]:
    """(verb, plural, namespace) of an API subject; namespace is "" for cluster scope."""
    _, _, verb, plural, namespace = subject.split(".", 4)
    return verb, plural, unscope(namespace)


def node(node_name: str, verb: ApiVerb, plural: str, namespace: str | None) -> str:
    return f"{PREFIX}.node.{node_name}.{verb}.{plural}.{scope(namespace)}"


def node_listen() -> str:
    return f"{PREFIX}.node.*.*.*.*"


def node_feed(node_name: str, plural: str = "pods") -> str:
    """Where the API tells a node agent of changes to the objects bound to it."""
    return f"{PREFIX}.node.{node_name}.feed.{plural}"


def cluster_feed(plural: str) -> str:
    """Where the API tells every node agent of changes to objects all nodes need (`services`,
    `endpoints`: what the service proxy serves)."""
    return f"{PREFIX}.feed.{plural}"


def node_stream(node_name: str, action: str) -> str:
    """Requests a node agent serves itself: `logs`, `exec`."""
    return f"{PREFIX}.node.{node_name}.{action}"


def parse_node(subject: str) -> tuple[str, str, str, str]:
    """(node, verb, plural, namespace) of a node-agent request subject."""
    _, _, node_name, verb, plural, namespace = subject.split(".", 5)
    return node_name, verb, plural, unscope(namespace)


def events(namespace: str | None, kind: str, name: str) -> str:
    return f"{PREFIX}.events.{scope(namespace)}.{kind}.{name}"


def events_filter(namespace: str | None = ALL, kind: str = ALL, name: str = ALL) -> str:
    """Filter for the events stream; `None` namespace means cluster scope, `*` means any."""
    ns = ALL if namespace == ALL else scope(namespace)
    return f"{PREFIX}.events.{ns}.{kind}.{name}"


def events_all() -> str:
    return f"{PREFIX}.events.>"


def metrics_node(node_name: str) -> str:
    """Where a node agent publishes its node and pod usage (`bus.metrics.NodeMetrics`)."""
    return f"{PREFIX}.metrics.node.{node_name}"


def metrics_proxy(node_name: str) -> str:
    """Where a node's service proxy publishes request counts (`bus.metrics.ProxyMetrics`)."""
    return f"{PREFIX}.metrics.proxy.{node_name}"


def metrics_filter(source: Literal["node", "proxy", "*"] = "*") -> str:
    """Every node's metrics of one source (`node`, `proxy`), or of both."""
    return f"{PREFIX}.metrics.{source}.*"


def metrics_all() -> str:
    return f"{PREFIX}.metrics.>"


def bucket(plural: str) -> str:
    return f"{PREFIX}-{plural}"


def key(namespace: str | None, name: str) -> str:
    return f"{scope(namespace)}.{name}"


def key_filter(namespace: str | None) -> str:
    """Keys of one namespace, or of every namespace when `namespace` is `*`."""
    return ">" if namespace == ALL else f"{scope(namespace)}.>"


def kv_subject(bucket_name: str, k: str) -> str:
    """The subject JetStream stores a KV entry under (NATS' own KV convention)."""
    return f"$KV.{bucket_name}.{k}"


def split_key(k: str) -> tuple[str, str]:
    namespace, _, name = k.partition(".")
    return ("" if namespace == CLUSTER_SCOPE else namespace), name


def service_name(component: str) -> str:
    """Name of a component's NATS micro service (`steer-api`, `steer-scheduler`, ...)."""
    return f"{PREFIX}-{component}"
