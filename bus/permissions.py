"""What each identity may publish and subscribe to: NATS subject permissions, per role.

The subjects carry what an authorization must see (bus/subjects.py: the verb, kind and
namespace of an API request; the node of a node's requests; the namespace of a logs or exec
request), so nats-server itself is the authorizer, as Kubernetes' RBAC and node authorizer are:

- `api`: serves `steer.api.>` and the node subjects (the only one that may join the `steer-api`
  queue), and is the only identity that may write JetStream (buckets, streams, consumers of
  its own).
- `scheduler`, `controllers`: the API requests they make, for the kinds and verbs they use, and
  read-only JetStream on the buckets they watch.
- `node` (one per node): only subjects carrying its own name, plus the cluster-wide Service and
  Endpoints feeds, and read-only JetStream on the NetworkPolicy, Namespace and Pod buckets (its
  NetworkPolicy enforcer watches them: a policy's peers may be any pod of the cluster) and on the
  Node bucket (its routes to the other nodes' pod CIDRs).
- `admin`: every API request, logs and exec, read-only JetStream on everything.
- `edit`, `view`: users, confined to their namespaces when they have any. `view` gets, lists and
  watches, and reads events; `edit` also writes, and may ask for logs and exec.

Every identity subscribes only to its own inbox prefix (`_INBOX_<name>`), so no one reads
another's replies. Responders answer through `allow_responses` (one reply per request), except
node agents, whose log streams are many messages: they may publish to the inboxes of the
identities allowed to ask for logs.

Read-only JetStream is: stream info, named consumers whose filter is confined to what may be
read (`bus.subjects.js_consumer_create`: nats-server checks the body's filter against the
subject), consumer info and delete, direct gets, and flow-control replies. No put, purge or
delete of an entry, and no stream creation, change or deletion.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from bus import kinds, subjects
from bus.protocol import SYSTEM_NAMESPACE

Role = Literal["api", "scheduler", "controllers", "node", "admin", "edit", "view"]
ROLES: tuple[Role, ...] = ("api", "scheduler", "controllers", "node", "admin", "edit", "view")
USER_ROLES: tuple[Role, ...] = ("admin", "edit", "view")

READ = ("get", "list")
WRITE = ("create", "update", "patch", "delete", "status")

# The API requests the scheduler and the controllers make: kind -> verbs. Both campaign for
# leadership on a Lease in steer-system and record Events anywhere; those are added below.
SCHEDULER_VERBS: dict[str, tuple[str, ...]] = {"pods": ("get", "patch", "status")}
CONTROLLERS_VERBS: dict[str, tuple[str, ...]] = {
    # The garbage collector reads every kind but Event, and patches (finalizers, owner
    # references) and deletes dependents, which are namespaced; the other controllers write
    # what they own.
    **{
        info.plural: ("get", "list", "patch", "delete") if info.namespaced else READ
        for info in kinds.KINDS
        if info.kind != "Event"
    },
    "pods": ("get", "list", "create", "patch", "delete", "status"),
    "replicasets": ("get", "list", "create", "patch", "delete", "status"),
    "deployments": ("get", "list", "patch", "delete", "status"),
    "endpoints": ("get", "list", "create", "update", "patch", "delete"),
    "horizontalpodautoscalers": ("get", "list", "patch", "delete", "status"),
    "nodes": ("get", "list", "patch", "status"),
    # The endpoints controller's EndpointsManaged condition and ServiceLB's ingress.
    "services": ("get", "list", "patch", "delete", "status"),
    # The repair passes delete IPAddresses and NodePorts no Service holds.
    "ipaddresses": ("get", "list", "delete"),
    "nodeports": ("get", "list", "delete"),
}
SCHEDULER_READS = ("pods", "nodes")
# What a node agent watches, read-only (no put, purge or delete): every NetworkPolicy and every
# namespace's labels for its NetworkPolicy enforcer (nodeagent/network/policyenforcer.py), and
# every Node's podCIDR and InternalIP for its routes to other nodes' pod CIDRs
# (nodeagent/network/noderoutes.py), as flannel and kube-router watch them (a node's API
# subjects let it read only its own Node, and polling a list would be late). Not the Pod
# bucket: a node reads in full only the pods bound to it, whose specs (environment included)
# are its business; of every pod, the enforcer gets the network view (bus/podview.py) from the
# API's list and the `steer.feed.pods` feed.
NODE_READS = ("networkpolicies", "namespaces", "nodes")
# The kinds each watches: every kind the garbage collector follows (all but Events).
CONTROLLERS_READS = tuple(info.plural for info in kinds.KINDS if info.kind != "Event")


@dataclass(frozen=True)
class Identity:
    """One credential's owner: a name (a subject token), a role, its nkey's public key, and for
    users the namespaces it is confined to (none: every namespace)."""

    name: str
    role: Role
    public_key: str
    namespaces: tuple[str, ...] = ()


@dataclass
class Permissions:
    publish: list[str] = field(default_factory=list)
    subscribe: list[str] = field(default_factory=list)
    publish_deny: list[str] = field(default_factory=list)
    allow_responses: bool = True

    def add(self, other: Permissions) -> None:
        self.publish += other.publish
        self.subscribe += other.subscribe
        self.publish_deny += other.publish_deny

    def as_config(self) -> dict[str, object]:
        publish: dict[str, object] = {"allow": _unique(self.publish)}
        if self.publish_deny:
            publish["deny"] = _unique(self.publish_deny)
        config: dict[str, object] = {"publish": publish, "subscribe": {"allow": _unique(self.subscribe)}}
        if self.allow_responses:
            config["allow_responses"] = True
        return config


def permissions(identity: Identity, everyone: Iterable[Identity] = ()) -> Permissions:
    """What `identity` may do; `everyone` (the registry) matters to node agents, which answer
    log requests into the inboxes of the identities that may ask for them."""
    # Users answer nothing; components answer requests (`allow_responses`) and `steer status`.
    own = Permissions(subscribe=[subjects.inbox_pattern(identity.name)], allow_responses=False)
    if identity.role not in USER_ROLES:
        own.allow_responses = True
        own.subscribe.append(subjects.MICRO_ALL)
    match identity.role:
        case "api":
            own.add(_api())
        case "scheduler":
            own.add(_requests(_with_common(SCHEDULER_VERBS)))
            own.add(_bucket_reads(SCHEDULER_READS, ()))
            own.add(_bucket_infos())
        case "controllers":
            own.add(_requests(_with_common(CONTROLLERS_VERBS)))
            own.add(_bucket_reads(CONTROLLERS_READS, ()))
            own.add(_bucket_infos())
            own.add(_metrics_reads())
            own.subscribe.append(subjects.metrics_all())  # the autoscaler's live samples
        case "node":
            own.add(_node(identity.name, everyone))
        case "admin" | "edit" | "view":
            own.add(_user(identity))
    return own


def _api() -> Permissions:
    return Permissions(
        publish=[
            subjects.JS_ALL,
            subjects.KV_ALL,
            subjects.events_all(),
            subjects.node_feeds("*"),
            subjects.cluster_feed("services"),
            subjects.cluster_feed("endpoints"),
            subjects.cluster_feed("pods"),
        ],
        subscribe=[subjects.api_all(), subjects.node_listen()],
    )


def _with_common(verbs: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Leader election (a Lease in steer-system) and Events, which every campaigner records."""
    return {**verbs, "events": ("create",), "leases:" + SYSTEM_NAMESPACE: ("get", "create", "update")}


def _requests(verbs: dict[str, tuple[str, ...]]) -> Permissions:
    """Publish rights for API requests: `kind` (any namespace) or `kind:namespace` -> verbs."""
    allowed = []
    for target, verb_list in verbs.items():
        plural, _, namespace = target.partition(":")
        info = kinds.BY_PLURAL[plural]
        token = namespace or ("*" if info.namespaced else subjects.CLUSTER_SCOPE)
        allowed += [subjects.api_pattern(verb, plural, token) for verb in verb_list]
    return Permissions(publish=allowed)


def _bucket_reads(plurals: Iterable[str], namespaces: tuple[str, ...]) -> Permissions:
    """Read-only JetStream on the buckets of `plurals`: in `namespaces`, or all when empty
    (a confined reader gets no cluster-scoped kind)."""
    grants = Permissions()
    for plural in plurals:
        info = kinds.BY_PLURAL[plural]
        if namespaces and not info.namespaced:
            continue
        bucket = subjects.bucket(plural)
        stream = subjects.kv_stream(bucket)
        filters = [subjects.key_filter(ns) for ns in namespaces] or [subjects.key_filter(subjects.ALL)]
        grants.publish += [subjects.js_stream_info(stream), subjects.js_flow_control(stream)]
        grants.publish += subjects.js_consumer_admin(stream)
        for key_filter in filters:
            kv = subjects.kv_subject(bucket, key_filter)
            grants.publish += [subjects.js_consumer_create(stream, kv), subjects.js_direct_get(stream, kv)]
        if not namespaces:
            # A reader of every key loses nothing by the older, unfiltered forms, which generic
            # NATS tools use (`nats kv watch`, nats.go's KeyValue.Watch, gets by body).
            grants.publish += subjects.js_unfiltered_reads(stream)
    return grants


def _bucket_infos() -> Permissions:
    """Stream info of every bucket (its settings and counts, no value): a component started
    before the API waits until every bucket exists (`bus.buckets.Buckets.wait`)."""
    streams = [subjects.kv_stream(subjects.bucket(info.plural)) for info in kinds.KINDS]
    return Permissions(publish=[subjects.js_stream_info(stream) for stream in streams])


def _events_reads(namespaces: tuple[str, ...]) -> Permissions:
    stream = subjects.EVENTS_STREAM
    grants = Permissions(publish=[subjects.js_stream_info(stream), subjects.js_flow_control(stream)])
    grants.publish += subjects.js_consumer_admin(stream)
    for ns in namespaces or ("*",):
        # A filter naming the namespace, then kind and name (`*` or not): `>` covers both tokens.
        grants.publish.append(subjects.js_consumer_create(stream, subjects.events_pattern(ns)))
    return grants


def _metrics_reads() -> Permissions:
    stream = subjects.METRICS_STREAM
    grants = Permissions(publish=[subjects.js_stream_info(stream), subjects.js_flow_control(stream)])
    grants.publish += subjects.js_consumer_admin(stream)
    grants.publish.append(subjects.js_consumer_create(stream, subjects.metrics_all()))
    return grants


def _node(name: str, everyone: Iterable[Identity]) -> Permissions:
    """Its own subjects only, plus the Service and Endpoints feeds every node's proxy needs and
    the pods' network view its NetworkPolicy enforcer needs (the same objects it may list
    through its own API subjects), and reads of the buckets its NetworkPolicy enforcer and its
    routes to other nodes watch (NODE_READS). Log streams go to the inboxes of whoever may ask
    for them."""
    askers = [i.name for i in everyone if i.role in ("admin", "edit")]
    grants = Permissions(
        publish=[
            subjects.node_requests(name),
            subjects.metrics_node(name),
            subjects.metrics_proxy(name),
            *(subjects.inbox_pattern(asker) for asker in askers),
        ],
        subscribe=[
            subjects.node_feeds(name),
            subjects.cluster_feed("services"),
            subjects.cluster_feed("endpoints"),
            subjects.cluster_feed("pods"),
            subjects.node_stream_pattern(name, "logs", "*"),
            subjects.node_stream_pattern(name, "exec", "*"),
            subjects.node_control_pattern(name),
        ],
    )
    grants.add(_bucket_reads(NODE_READS, ()))
    return grants


def _user(identity: Identity) -> Permissions:
    namespaces = identity.namespaces if identity.role != "admin" else ()
    verbs = READ if identity.role == "view" else READ + WRITE
    grants = Permissions(publish=[subjects.MICRO_ALL])  # `steer status`
    if namespaces:
        grants.publish += [subjects.api_pattern(verb, "*", ns) for ns in namespaces for verb in verbs]
    else:
        grants.publish += [subjects.api_pattern(verb, "*", "*") for verb in verbs]
        if identity.role == "edit":
            # Every namespace, but no cluster-scoped object (namespaces, nodes): that is admin's.
            grants.publish_deny += [subjects.api_pattern(v, "*", subjects.CLUSTER_SCOPE) for v in WRITE]
    if identity.role != "view":
        for ns in namespaces or ("*",):
            grants.publish += [
                subjects.node_stream_pattern("*", "logs", ns),
                subjects.node_stream_pattern("*", "exec", ns),
            ]
        grants.publish.append(subjects.node_control_pattern("*"))
    grants.add(_bucket_reads([info.plural for info in kinds.KINDS], namespaces))
    grants.add(_events_reads(namespaces))
    if not namespaces:
        grants.add(_metrics_reads())  # `steer top`: every node's usage
    return grants


def authorization_config(identities: Iterable[Identity]) -> str:
    """A nats-server config fragment (`authorization { users: [...] }`) for these identities,
    meant to be `include`d by the server's configuration. JSON is valid NATS config."""
    people = sorted(identities, key=lambda i: (ROLES.index(i.role), i.name))
    users = [{"nkey": i.public_key, "permissions": permissions(i, people).as_config()} for i in people]
    header = [
        "# Generated by `steer credentials`; edit the registry with it, not this file.",
        "# Identities: " + ", ".join(f"{i.name} ({i.role})" for i in people),
    ]
    body = json.dumps({"users": users}, indent=2)
    return "\n".join(header) + "\nauthorization " + body + "\n"


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
