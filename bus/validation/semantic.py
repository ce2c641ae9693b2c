"""Semantic rules of each kind: what a well-typed object must also satisfy to be stored.

The structural walk (`schema.py`) has already vouched for every field's type, so the rules here
work on typed objects. Each kind's rules live beside its group (`pod.py`, `apps.py`,
`networking.py`, `autoscaling.py`); the small record and cluster kinds are checked here.
Every cause is collected, never just the first, so a user fixes a manifest in one round trip.
"""

from __future__ import annotations

import ipaddress

from bus.errors import StatusCause
from bus.meta import Resource
from bus.resources import (
    Deployment,
    Endpoints,
    Event,
    HorizontalPodAutoscaler,
    IPAddress,
    Lease,
    NetworkPolicy,
    Node,
    NodePort,
    Pod,
    ReplicaSet,
    Service,
)
from bus.validation import apps, autoscaling, networking, networkpolicy, pod
from bus.validation.rules import (
    at_least,
    dns1123_label,
    dns1123_subdomain,
    duplicate,
    formatted,
    invalid_value,
    kind_name,
    label_value,
    object_meta,
    qualified_name,
    quantity,
    required,
)


def validate(obj: Resource) -> list[StatusCause]:
    """Every semantic cause against `obj`; an empty list means it may be stored."""
    # Event names carry a generated suffix after a dot (`web-1.17a2b3c4`), as in Kubernetes.
    # An IPAddress is named by its address (`10.96.0.10`), as in Kubernetes; a NodePort by its port.
    name_format = (
        dns1123_subdomain
        if isinstance(obj, Event)
        else networking.ipv4_address
        if isinstance(obj, IPAddress)
        else networking.port_number_name
        if isinstance(obj, NodePort)
        else dns1123_label
    )
    causes = object_meta(obj.metadata, name_format=name_format)
    match obj:
        case Pod():
            causes += pod.pod_spec(obj.spec, "spec")
        case ReplicaSet():
            causes += apps.replica_set(obj)
        case Deployment():
            causes += apps.deployment(obj)
        case Service():
            causes += networking.service(obj)
        case Endpoints():
            causes += networking.endpoints(obj)
        case IPAddress():
            causes += networking.ip_address(obj)
        case NodePort():
            causes += networking.node_port(obj)
        case NetworkPolicy():
            causes += networkpolicy.network_policy(obj)
        case HorizontalPodAutoscaler():
            causes += autoscaling.horizontal_pod_autoscaler(obj)
        case Node():
            causes += _node(obj)
        case Lease():
            causes += _lease(obj)
        case Event():
            causes += _event(obj)
    return causes


def _node(node: Node) -> list[StatusCause]:
    """Taints are matched against tolerations by key and effect, so each pair appears once."""
    causes: list[StatusCause] = []
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(node.spec.taints):
        item = f"spec.taints[{i}]"
        causes += formatted(f"{item}.key", taint.key, qualified_name)
        causes += formatted(f"{item}.value", taint.value, label_value)
        if (taint.key, taint.effect) in seen:
            causes.append(duplicate(item, {"key": taint.key, "effect": taint.effect}))
        seen.add((taint.key, taint.effect))
    causes += _pod_cidrs(node)
    for field, amounts in (("capacity", node.status.capacity), ("allocatable", node.status.allocatable)):
        for name, value in amounts.items():
            causes += formatted(f"status.{field}", name, qualified_name)
            causes += quantity(f"status.{field}[{name}]", value)
    return causes


def _pod_cidrs(node: Node) -> list[StatusCause]:
    """Kubernetes' rules for an IPv4-only cluster: each a CIDR; podCIDRs holds at most one per
    IP family (so one here), and its first entry is podCIDR when both are given."""
    spec = node.spec
    causes: list[StatusCause] = []
    if spec.pod_cidr:
        causes += formatted("spec.podCIDR", spec.pod_cidr, ipv4_cidr)
    for i, cidr in enumerate(spec.pod_cidrs):
        causes += formatted(f"spec.podCIDRs[{i}]", cidr, ipv4_cidr)
    if len(spec.pod_cidrs) > 1:
        causes.append(
            invalid_value(
                "spec.podCIDRs", spec.pod_cidrs, "may specify no more than one CIDR for each IP family"
            )
        )
    if spec.pod_cidr and spec.pod_cidrs and spec.pod_cidrs[0] != spec.pod_cidr:
        causes.append(invalid_value("spec.podCIDRs[0]", spec.pod_cidrs[0], "must match spec.podCIDR"))
    return causes


def ipv4_cidr(value: str) -> list[str]:
    """An IPv4 network in CIDR notation, its address the network's first (`10.244.1.0/24`)."""
    try:
        ipaddress.IPv4Network(value, strict=True)
    except ValueError as err:
        return [
            f"must be a valid IPv4 CIDR (a network address and a prefix length, e.g. 10.244.1.0/24): {err}"
        ]
    return [] if "/" in value else ["must be a valid IPv4 CIDR: the prefix length is missing (e.g. /24)"]


def _lease(lease: Lease) -> list[StatusCause]:
    causes = at_least("spec.leaseTransitions", lease.spec.lease_transitions, 0)
    duration = lease.spec.lease_duration_seconds
    if duration is not None and duration <= 0:
        causes.append(invalid_value("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    return causes


def _event(event: Event) -> list[StatusCause]:
    """The involved object's namespace, kind and name are tokens of the subject the Event is
    published on (`steer.events.<namespace>.<Kind>.<name>`), so each must be one valid token."""
    ref = event.involved_object
    causes = [
        required(f"involvedObject.{field}")
        for field, value in (("kind", ref.kind), ("name", ref.name))
        if not value
    ]
    if ref.kind:
        causes += formatted("involvedObject.kind", ref.kind, kind_name)
    if ref.name:
        causes += formatted("involvedObject.name", ref.name, dns1123_label)
    if ref.namespace:
        causes += formatted("involvedObject.namespace", ref.namespace, dns1123_label)
    return causes
