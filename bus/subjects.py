"""Every NATS subject, stream, bucket and key name steersman uses, and nothing else.

docs/protocol.md is the contract these functions implement; a controller in another language
can be written from it. Tokens:

    steer.api.<verb>.<plural>.<namespace>        request/reply to the API (`_` cluster scope, `_all` all)
    steer.node.<node>.<verb>.<plural>.<namespace> requests a node agent makes; the API trusts <node>
    steer.node.<node>.feed.pods                   the API tells a node of changes to its pods
    steer.feed.services | .endpoints              the API tells every node agent (its service proxy)
    steer.node.<node>.logs|exec.<namespace>       served by the node agent itself (the pod's namespace)
    steer.node.<node>.control.<id>                a logs stream's keepalive and cancel
    steer.events.<namespace>.<Kind>.<name>       every Event, captured by the STEER_EVENTS stream
    steer.metrics.node.<node> | .proxy.<node>    usage a node agent / its service proxy publishes
                                                 (bus/metrics.py); STEER_METRICS keeps the latest of each

KV buckets are `steer-<plural>`; keys are `<namespace>.<name>`, `_.<name>` for cluster-scoped kinds,
so that every key has the same shape and `<namespace>.>` filters one namespace.

Every token a builder puts into a subject or key is checked here, whoever the caller: a name with
a space, a dot or a wildcard would change what the subject means, and one longer than the
server's control line (4 KiB for the whole `PUB` line) makes nats-server close the publisher's
connection. So a bad token is a `BadRequest` before anything is sent, and no subject built here
is longer than MAX_SUBJECT_LENGTH.
"""

from __future__ import annotations

import re
from typing import Literal

from bus.errors import BadRequest

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

# The longest token (a DNS-1123 subdomain, the longest name any kind has) and subject we build.
# The longest legitimate subject is a KV key of an Event under JetStream's direct-get prefix,
# about 400 bytes; nats-server's control line, which also holds the reply subject, is 4096.
MAX_TOKEN_LENGTH = 253
MAX_SUBJECT_LENGTH = 512
# What a token may hold: the characters a JetStream KV key may hold, except the dot that
# separates tokens. No whitespace, no wildcard, nothing a NATS protocol line could trip on.
_TOKEN = re.compile(r"[-/_=A-Za-z0-9]+")
# A name inside a key may have dots (Event names are `<object>.<hex>`), but no empty token.
_DOTTED = re.compile(r"[-/_=A-Za-z0-9]+(\.[-/_=A-Za-z0-9]+)*")


def _shown(value: str) -> str:
    """A value for an error message: quoted, short, and printable whatever it holds."""
    text = value if len(value) <= 40 else f"{value[:40]}..."
    return f"{text!r} ({len(value)} characters)" if len(value) > 40 else repr(text)


def token(value: str, what: str) -> str:
    """`value` if it can stand as one subject token, else BadRequest naming `what` it is."""
    if len(value) > MAX_TOKEN_LENGTH:
        raise BadRequest(f"{what} {_shown(value)} is too long: at most {MAX_TOKEN_LENGTH} characters")
    if not _TOKEN.fullmatch(value):
        raise BadRequest(
            f"{what} {_shown(value)} cannot be used in a subject: it must be non-empty and hold only "
            "letters, digits, '-', '_', '/' and '='"
        )
    return value


def dotted_name(value: str, what: str = "name") -> str:
    """`value` if it can end a key or subject: tokens as `token`, joined by single dots."""
    if len(value) > MAX_TOKEN_LENGTH:
        raise BadRequest(f"{what} {_shown(value)} is too long: at most {MAX_TOKEN_LENGTH} characters")
    if not _DOTTED.fullmatch(value):
        raise BadRequest(
            f"{what} {_shown(value)} cannot be used in a key: it must be non-empty and hold only "
            "letters, digits, '-', '_', '/', '=' and single dots inside"
        )
    return value


def _bounded(subject: str) -> str:
    if len(subject) > MAX_SUBJECT_LENGTH:  # every token is bounded, so only a bug gets here
        raise BadRequest(f"subject {_shown(subject)} is longer than {MAX_SUBJECT_LENGTH} characters")
    return subject


def scope(namespace: str | None) -> str:
    if namespace == ALL:
        return ALL_NAMESPACES
    return token(namespace, "namespace") if namespace else CLUSTER_SCOPE


def unscope(token: str) -> str:
    """The namespace a subject token stands for: "" for cluster scope, `*` for all."""
    if token == ALL_NAMESPACES:
        return ALL
    return "" if token == CLUSTER_SCOPE else token


def api(verb: ApiVerb, plural: str, namespace: str | None) -> str:
    return _bounded(f"{PREFIX}.api.{token(verb, 'verb')}.{token(plural, 'resource')}.{scope(namespace)}")


def api_listen(verb: ApiVerb) -> str:
    """What the API service subscribes to for one verb."""
    return f"{PREFIX}.api.{verb}.*.*"


def parse_api(subject: str) -> tuple[str, str, str]:
    """(verb, plural, namespace) of an API subject; namespace is "" for cluster scope."""
    _, _, verb, plural, namespace = subject.split(".", 4)
    return verb, plural, unscope(namespace)


def node(node_name: str, verb: ApiVerb, plural: str, namespace: str | None) -> str:
    tokens = f"{token(node_name, 'node name')}.{token(verb, 'verb')}.{token(plural, 'resource')}"
    return _bounded(f"{PREFIX}.node.{tokens}.{scope(namespace)}")


def node_listen() -> str:
    return f"{PREFIX}.node.*.*.*.*"


def node_feed(node_name: str, plural: str = "pods") -> str:
    """Where the API tells a node agent of changes to the objects bound to it."""
    return _bounded(f"{PREFIX}.node.{token(node_name, 'node name')}.feed.{token(plural, 'resource')}")


def cluster_feed(plural: str) -> str:
    """Where the API tells every node agent of changes to objects all nodes need (`services`,
    `endpoints`: what the service proxy serves; `pods`: every pod's network view, for the
    NetworkPolicy enforcers)."""
    return _bounded(f"{PREFIX}.feed.{token(plural, 'resource')}")


def node_stream(node_name: str, action: str, namespace: str) -> str:
    """Requests a node agent serves itself (`logs`, `exec`) about a pod of `namespace`: the
    namespace is a token so that a user confined to it may be let through, and no further."""
    tokens = f"{token(node_name, 'node name')}.{token(action, 'action')}.{token(namespace, 'namespace')}"
    return _bounded(f"{PREFIX}.node.{tokens}")


def node_stream_listen(node_name: str, action: str) -> str:
    """What a node agent subscribes to for one action, whatever the namespace."""
    return _bounded(f"{PREFIX}.node.{token(node_name, 'node name')}.{token(action, 'action')}.*")


def node_control(node_name: str, stream_id: str) -> str:
    """Where the requester of a logs stream sends `keepalive` and `cancel` (five tokens: never
    mistaken for a node's six-token API request)."""
    return _bounded(f"{PREFIX}.node.{token(node_name, 'node name')}.control.{token(stream_id, 'stream id')}")


def parse_node_stream(subject: str) -> tuple[str, str, str]:
    """(node, action, namespace) of a logs or exec request subject."""
    _, _, node_name, action, namespace = subject.split(".", 4)
    return node_name, action, namespace


def parse_node(subject: str) -> tuple[str, str, str, str]:
    """(node, verb, plural, namespace) of a node-agent request subject."""
    _, _, node_name, verb, plural, namespace = subject.split(".", 5)
    return node_name, verb, plural, unscope(namespace)


def events(namespace: str | None, kind: str, name: str) -> str:
    return _bounded(f"{PREFIX}.events.{scope(namespace)}.{token(kind, 'kind')}.{token(name, 'name')}")


def events_filter(namespace: str | None = ALL, kind: str = ALL, name: str = ALL) -> str:
    """Filter for the events stream; `None` namespace means cluster scope, `*` means any."""
    ns = ALL if namespace == ALL else scope(namespace)
    kind = kind if kind == ALL else token(kind, "kind")
    name = name if name == ALL else token(name, "name")
    return _bounded(f"{PREFIX}.events.{ns}.{kind}.{name}")


def events_all() -> str:
    return f"{PREFIX}.events.>"


def metrics_node(node_name: str) -> str:
    """Where a node agent publishes its node and pod usage (`bus.metrics.NodeMetrics`); with
    an empty name, the prefix every node's subject starts with."""
    return _bounded(f"{PREFIX}.metrics.node.{node_name and token(node_name, 'node name')}")


def metrics_proxy(node_name: str) -> str:
    """Where a node's service proxy publishes request counts (`bus.metrics.ProxyMetrics`); with
    an empty name, the prefix every node's subject starts with."""
    return _bounded(f"{PREFIX}.metrics.proxy.{node_name and token(node_name, 'node name')}")


def metrics_filter(source: Literal["node", "proxy", "*"] = "*") -> str:
    """Every node's metrics of one source (`node`, `proxy`), or of both."""
    return f"{PREFIX}.metrics.{source}.*"


def metrics_all() -> str:
    return f"{PREFIX}.metrics.>"


def bucket(plural: str) -> str:
    return f"{PREFIX}-{token(plural, 'resource')}"


def key(namespace: str | None, name: str) -> str:
    return _bounded(f"{scope(namespace)}.{dotted_name(name)}")


def key_filter(namespace: str | None) -> str:
    """Keys of one namespace, or of every namespace when `namespace` is `*`."""
    return ">" if namespace == ALL else f"{scope(namespace)}.>"


def kv_stream(bucket_name: str) -> str:
    """The stream behind a KV bucket (NATS' own KV convention)."""
    return f"KV_{bucket_name}"


def kv_subject(bucket_name: str, k: str) -> str:
    """The subject JetStream stores a KV entry under (NATS' own KV convention)."""
    return f"$KV.{bucket_name}.{k}"


def split_key(k: str) -> tuple[str, str]:
    namespace, _, name = k.partition(".")
    return ("" if namespace == CLUSTER_SCOPE else namespace), name


def service_name(component: str) -> str:
    """Name of a component's NATS micro service (`steer-api`, `steer-scheduler`, ...)."""
    return f"{PREFIX}-{component}"


# -- What NATS permissions name (bus/permissions.py). Patterns: `*` and `>` are wildcards here.

INBOX_PREFIX = "_INBOX"
MICRO_ALL = "$SRV.>"  # every NATS micro service request (ping, info, stats)
JS_ALL = "$JS.>"  # the JetStream API, flow control and acks: the API alone
KV_ALL = "$KV.>"  # every bucket entry: written by the API alone


def inbox_prefix(identity: str) -> str:
    """An identity's own inbox prefix (nats-py's `inbox_prefix`): its replies and watch deliveries
    arrive under it, and NATS lets no other identity subscribe there."""
    return f"{INBOX_PREFIX}_{token(identity, 'identity')}"


def is_inbox(subject: str) -> bool:
    """Whether a reply subject is an inbox (`_INBOX.` or an identity's `_INBOX_<name>.`): a
    responder answers only there, never on a subject someone named to have it publish."""
    return subject.startswith((f"{INBOX_PREFIX}.", f"{INBOX_PREFIX}_"))


def inbox_pattern(identity: str) -> str:
    return f"{inbox_prefix(identity)}.>"


def api_all() -> str:
    return f"{PREFIX}.api.>"


def api_pattern(verb: str, plural: str, namespace: str) -> str:
    """API requests of one verb, kind and namespace token (each may be `*`)."""
    return f"{PREFIX}.api.{verb}.{plural}.{namespace}"


def node_requests(node_name: str) -> str:
    """Every API request a node agent makes (`steer.node.<node>.<verb>.<plural>.<namespace>`)."""
    return f"{PREFIX}.node.{token(node_name, 'node name')}.*.*.*"


def node_stream_pattern(node_name: str, action: str, namespace: str) -> str:
    """Logs or exec requests to a node (`*` for any) about pods of a namespace (`*` for any)."""
    return f"{PREFIX}.node.{node_name}.{action}.{namespace}"


def node_control_pattern(node_name: str) -> str:
    return f"{PREFIX}.node.{node_name}.control.*"


def node_feeds(node_name: str) -> str:
    return f"{PREFIX}.node.{node_name}.feed.*"


def events_pattern(namespace: str) -> str:
    """Events about objects of one namespace (`_` cluster scope, `*` any)."""
    return f"{PREFIX}.events.{namespace}.>"


def js_stream_info(stream: str) -> str:
    return f"$JS.API.STREAM.INFO.{stream}"


def js_consumer_create(stream: str, filter_subject: str) -> str:
    """Creating a named consumer on `stream` whose filter is `filter_subject`: nats-server checks
    that the filter in the request body is the one in the subject, so a permission on this
    pattern confines what the consumer may read."""
    return f"$JS.API.CONSUMER.CREATE.{stream}.*.{filter_subject}"


def js_consumer_admin(stream: str) -> list[str]:
    """Reading and deleting the (ephemeral) consumers one made."""
    return [f"$JS.API.CONSUMER.INFO.{stream}.*", f"$JS.API.CONSUMER.DELETE.{stream}.*"]


def js_direct_get(stream: str, subject_filter: str) -> str:
    """Direct reads of the last message on a subject (a KV get)."""
    return f"$JS.API.DIRECT.GET.{stream}.{subject_filter}"


def js_unfiltered_reads(stream: str) -> list[str]:
    """The forms of consumer creation and message gets that do not name the subject read: for
    readers of the whole stream only."""
    return [
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.*",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
    ]


def js_flow_control(stream: str) -> str:
    """A push consumer's flow-control replies."""
    return f"$JS.FC.{stream}.>"
