"""What a node agent may do through its node-scoped subjects (Kubernetes' NodeRestriction).

The node name in `steer.node.<node>.<verb>.<plural>.<namespace>` is trusted: NATS permissions
confine each node's credential to its own subjects. With that name, an agent may register and
update only its own Node and Lease, read and report on only the pods bound to it, list every
pod as the network sees it (`view: network`, what its NetworkPolicy enforcer needs), read
Services and Endpoints (its service proxy serves them all), and record events; everything else
is Forbidden.
"""

from __future__ import annotations

import msgspec

from bus import kinds
from bus.errors import BadRequest, Forbidden
from bus.podview import NETWORK_VIEW
from bus.protocol import NODE_LEASE_NAMESPACE, DeleteRequest, GetRequest, ListRequest
from bus.resources import Pod
from bus.store import Store
from bus.validation import requests
from services.api.bodies import parse_request


class _Named(msgspec.Struct):
    class Meta(msgspec.Struct):
        name: str = ""

    metadata: Meta = msgspec.field(default_factory=Meta)


_named = msgspec.json.Decoder(_Named)


def _object_name(body: bytes) -> str:
    try:
        return _named.decode(body).metadata.name
    except (msgspec.DecodeError, RecursionError):
        raise BadRequest("request body is not a valid object") from None


def _request_name(verb: str, body: bytes) -> str:
    """The name a request is about, checked before it goes near a key or a subject."""
    if verb == "get":
        name, path = parse_request(body, GetRequest).name, "name"
    elif verb == "delete":
        name, path = parse_request(body, DeleteRequest).name, "name"
    else:
        name, path = _object_name(body), "metadata.name"
    requests.check("invalid request", requests.lookup_name(name, path))
    return name


ALLOWED: dict[str, frozenset[str]] = {
    "nodes": frozenset({"get", "create", "update", "status"}),
    "leases": frozenset({"get", "create", "update"}),
    "pods": frozenset({"get", "list", "status", "delete"}),
    "events": frozenset({"create"}),
    # Every node's service proxy serves every Service (as kube-proxy does): read-only, cluster-wide.
    "services": frozenset({"get", "list"}),
    "endpoints": frozenset({"get", "list"}),
}


async def admit(
    store: Store, node: str, verb: str, info: kinds.KindInfo, namespace: str, body: bytes
) -> bytes:
    """Check a node's request; the (possibly narrowed) body to hand to the verb. Forbidden if not allowed."""
    if verb not in ALLOWED.get(info.plural, frozenset()):
        raise Forbidden(f'node "{node}" may not {verb} {info.plural}')
    match info.plural:
        case "nodes":
            _require(_request_name(verb, body) == node, node, f"{verb} a Node other than its own")
        case "leases":
            _require(namespace == NODE_LEASE_NAMESPACE, node, f"use leases outside {NODE_LEASE_NAMESPACE}")
            _require(_request_name(verb, body) == node, node, f"{verb} a Lease other than its own")
        case "pods" if verb == "list":
            # A node lists only its own pods, whatever selector it asked for; every pod only
            # as the network sees it.
            request = parse_request(body, ListRequest) if body else ListRequest()
            if request.view == NETWORK_VIEW:
                return body
            own = f"spec.nodeName={node}"
            request.field_selector = f"{request.field_selector},{own}" if request.field_selector else own
            return msgspec.json.encode(request)
        case "pods":
            pod = await store.get(Pod, namespace, _request_name(verb, body))
            _require(pod.spec.node_name == node, node, f'{verb} pod "{pod.metadata.name}", bound elsewhere')
    return body


def _require(ok: bool, node: str, what: str) -> None:
    if not ok:
        raise Forbidden(f'node "{node}" may not {what}')
