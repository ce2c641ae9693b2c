"""The registry of kinds: names, short names, scope and apiVersion of every kind steersman serves.

The CLI resolves whatever a user types (`po`, `pods`, `Pod`, `deploy`, `deployment.apps`) here,
the API uses it to pick the type to decode, and the store to pick the bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

from bus.errors import BadRequest
from bus.meta import Resource
from bus.resources import (
    Deployment,
    Endpoints,
    Event,
    HorizontalPodAutoscaler,
    IPAddress,
    Lease,
    Namespace,
    NetworkPolicy,
    Node,
    NodePort,
    Pod,
    ReplicaSet,
    Service,
)


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    type: type[Resource]
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    has_spec: bool = True
    # Whether the API emits Created/Updated/Deleted events for objects of this kind.
    lifecycle_events: bool = True
    # Whether spec changes get an Updated event too (not for pods: their one spec change is the
    # binding, which the scheduler reports as Scheduled).
    update_events: bool = True

    @property
    def api_version(self) -> str:
        return self.type.API_VERSION

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def qualified(self) -> str:
        """`deployment.apps`, or `pod` for the core group, as kubectl prints it."""
        return f"{self.singular}.{self.group}" if self.group else self.singular

    @property
    def qualified_plural(self) -> str:
        """`deployments.apps`, or `pods`, as Kubernetes names a resource in errors."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


KINDS: tuple[KindInfo, ...] = (
    KindInfo("Namespace", "namespaces", Namespace, namespaced=False, short_names=("ns",)),
    KindInfo("Node", "nodes", Node, namespaced=False, short_names=("no",)),
    KindInfo("Pod", "pods", Pod, short_names=("po",), update_events=False),
    KindInfo("ReplicaSet", "replicasets", ReplicaSet, short_names=("rs",)),
    KindInfo("Deployment", "deployments", Deployment, short_names=("deploy",)),
    KindInfo("Service", "services", Service, short_names=("svc",)),
    # Endpoints follow every readiness change: an Updated event each time would only be noise.
    KindInfo("Endpoints", "endpoints", Endpoints, short_names=("ep",), has_spec=False, update_events=False),
    KindInfo(
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        HorizontalPodAutoscaler,
        short_names=("hpa",),
    ),
    KindInfo("NetworkPolicy", "networkpolicies", NetworkPolicy, short_names=("netpol",)),
    KindInfo("Event", "events", Event, short_names=("ev",), has_spec=False, lifecycle_events=False),
    KindInfo("Lease", "leases", Lease, lifecycle_events=False),
    # The API's record of each ClusterIP, written with every Service create and delete: an event
    # each time would only be noise (and an address, holding dots, is no events subject token).
    KindInfo(
        "IPAddress", "ipaddresses", IPAddress, namespaced=False, short_names=("ip",), lifecycle_events=False
    ),
    # The same for each nodePort.
    KindInfo("NodePort", "nodeports", NodePort, namespaced=False, lifecycle_events=False),
)

BY_KIND: dict[str, KindInfo] = {info.kind: info for info in KINDS}
BY_PLURAL: dict[str, KindInfo] = {info.plural: info for info in KINDS}
_BY_NAME: dict[str, KindInfo] = {}
for _info in KINDS:
    for _name in (_info.kind.lower(), _info.plural, _info.singular, *_info.short_names):
        _BY_NAME[_name] = _info
        if _info.group:
            _BY_NAME[f"{_name}.{_info.group}"] = _info


def resolve(name: str) -> KindInfo:
    """The kind a user means by `name` (case-insensitive; plural, singular, short or qualified)."""
    info = _BY_NAME.get(name.lower())
    if info is None:
        raise BadRequest(f'the server doesn\'t have a resource type "{name}"')
    return info


def by_kind(kind: str) -> KindInfo:
    """The kind named exactly as in a manifest's `kind` field."""
    info = BY_KIND.get(kind)
    if info is None:
        known = ", ".join(sorted(BY_KIND))
        raise BadRequest(f'no kind "{kind}" is registered (known kinds: {known})')
    return info


def of(obj: Resource) -> KindInfo:
    return BY_KIND[obj.kind]
