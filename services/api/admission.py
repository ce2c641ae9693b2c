"""What the API decides for the user: server-set metadata, generation, and immutable fields.

Kubernetes' registry strategies, reduced to the rules steersman needs: uid, creationTimestamp
and generation are the server's; generation moves only when the spec does; status is written
only through the status verb; some fields cannot change once set.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import uuid

import msgspec

from bus import kinds
from bus.errors import BadRequest, StatusCause, invalid
from bus.events import now
from bus.meta import Resource
from bus.resources import Deployment, Node, Pod, ReplicaSet, Service
from bus.resources.networking import HEADLESS, NODE_PORT_TYPES
from bus.validation.rules import invalid_value

_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


def generated_name(prefix: str, *, seed: str = "") -> str:
    """`web-` -> `web-x7k2p`, as Kubernetes completes generateName. With `seed` (a client's
    chosen uid) the suffix comes from it: the same create sent again names the same object, so
    a retry finds its own object instead of making a second one."""
    if not seed:
        return prefix[:58] + "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
    digest = hashlib.sha256(seed.encode()).digest()
    return prefix[:58] + "".join(_SUFFIX_ALPHABET[b % len(_SUFFIX_ALPHABET)] for b in digest[:5])


def requested_uid(text: str) -> str:
    """The uid a client asks a create to give (CREATE_UID_HEADER): a UUID, or nothing."""
    if not text:
        return ""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise BadRequest(f'invalid create uid "{text[:64]}": it must be a UUID') from None


def spec_of(obj: Resource) -> object:
    """What counts as the spec for generation: `spec`, or the whole body for spec-less kinds."""
    spec = getattr(obj, "spec", None)
    if spec is not None:
        return spec
    return msgspec.structs.replace(obj, metadata=type(obj.metadata)())


def prepare_create(obj: Resource, info: kinds.KindInfo, *, uid: str = "") -> None:
    """Server-set fields of a new object; `uid` the one its client chose (requested_uid)."""
    meta = obj.metadata
    if not meta.name and meta.generate_name:
        meta.name = generated_name(meta.generate_name, seed=uid)
    meta.uid = uid or str(uuid.uuid4())
    meta.creation_timestamp = now()
    meta.generation = 1
    meta.resource_version = ""
    meta.deletion_timestamp = None
    meta.deletion_grace_period_seconds = None
    if info.has_spec and not isinstance(obj, Node) and hasattr(obj, "status"):
        # Status belongs to controllers and agents; a node agent registers its Node with one.
        status_type = type(obj.status)
        obj.status = status_type()


def set_defaults(service: Service) -> None:
    """What Kubernetes fills in on a single-stack IPv4 cluster once a Service has its address
    (or is headless): clusterIPs from clusterIP, the one family, and SingleStack (which is what
    PreferDualStack comes to when there is no second family)."""
    spec = service.spec
    spec.cluster_ips = [spec.cluster_ip] if spec.cluster_ip else []
    spec.ip_families = ["IPv4"]
    spec.ip_family_policy = "SingleStack"


def keep_allocated(new: Service, old: Service) -> None:
    """An update that leaves out what the API allocated (clusterIP, clusterIPs) or defaulted
    keeps the stored values, as Kubernetes does, so that a manifest applied again does not
    read as a change."""
    spec, before = new.spec, old.spec
    if not spec.cluster_ip and not spec.cluster_ips:
        spec.cluster_ip, spec.cluster_ips = before.cluster_ip, list(before.cluster_ips)
    spec.cluster_ip = spec.cluster_ip or next(iter(spec.cluster_ips), "")
    if before.cluster_ip:
        set_defaults(new)
    keep_node_ports(new, old)


def drop_unchanged_node_ports(raw: object, current: object) -> None:
    """Kubernetes' `dropTypeDependentFields`: a Service (`raw`, the body before validation) whose
    type becomes one that takes no nodePorts, with its ports' nodePorts as `current` has them,
    loses them instead of being refused for them (`kubectl edit` changes the type alone)."""
    if not isinstance(current, Service) or current.spec.type not in NODE_PORT_TYPES:
        return
    spec = raw.get("spec") if isinstance(raw, dict) else None
    if not isinstance(spec, dict) or spec.get("type", "ClusterIP") in NODE_PORT_TYPES:
        return
    ports = spec.get("ports")
    if not isinstance(ports, list) or not all(isinstance(port, dict) for port in ports):
        return
    if [port.get("nodePort") for port in ports] == [port.node_port for port in current.spec.ports]:
        for port in ports:
            port.pop("nodePort", None)


def keep_node_ports(new: Service, old: Service) -> None:
    """A port that leaves its nodePort out keeps the one it had, as Kubernetes does: the old
    port of the same name, else of the same number and protocol, unless another port of the
    update uses that nodePort. Nothing is kept when either type opens no nodePorts."""
    if new.spec.type not in NODE_PORT_TYPES or old.spec.type not in NODE_PORT_TYPES:
        return
    used = {port.node_port for port in new.spec.ports if port.node_port is not None}
    by_name = {port.name: port.node_port for port in old.spec.ports if port.node_port is not None}
    by_number = {
        (port.port, port.protocol): port.node_port for port in old.spec.ports if port.node_port is not None
    }
    for port in new.spec.ports:
        if port.node_port is not None:
            continue
        kept = by_name.get(port.name) or by_number.get((port.port, port.protocol))
        if kept is not None and kept not in used:
            port.node_port = kept
            used.add(kept)


def prepare_update(new: Resource, old: Resource) -> None:
    """Carry the server's fields over from the stored object; reject changes to immutable ones."""
    if isinstance(new, Service) and isinstance(old, Service):
        keep_allocated(new, old)
    meta, old_meta = new.metadata, old.metadata
    meta.uid = old_meta.uid
    meta.creation_timestamp = old_meta.creation_timestamp
    meta.deletion_timestamp = old_meta.deletion_timestamp
    meta.deletion_grace_period_seconds = old_meta.deletion_grace_period_seconds
    meta.generate_name = old_meta.generate_name
    if hasattr(old, "status"):
        new.status = old.status  # type: ignore[attr-defined]
    meta.generation = old_meta.generation + (1 if spec_of(new) != spec_of(old) else 0)
    causes = immutable_changes(new, old)
    if causes:
        raise invalid(new.kind, meta.name, causes)


def immutable_changes(new: Resource, old: Resource) -> list[StatusCause]:
    causes: list[StatusCause] = []
    if isinstance(new, Pod) and isinstance(old, Pod):
        if old.spec.node_name and new.spec.node_name != old.spec.node_name:
            causes.append(StatusCause(field="spec.nodeName", message="field is immutable once set"))
    if isinstance(new, Deployment | ReplicaSet) and isinstance(old, Deployment | ReplicaSet):
        if new.spec.selector != old.spec.selector:
            causes.append(StatusCause(field="spec.selector", message="field is immutable"))
    if isinstance(new, Service) and isinstance(old, Service):
        causes += _service_changes(new, old)
    if isinstance(new, Node) and isinstance(old, Node):
        # Kubernetes' rule: a node's pod CIDRs may go from unset to set, never change after.
        message = 'node updates may not change podCIDR except from "" to valid'
        if old.spec.pod_cidr and new.spec.pod_cidr != old.spec.pod_cidr:
            causes.append(StatusCause(field="spec.podCIDR", message=message))
        if old.spec.pod_cidrs and new.spec.pod_cidrs != old.spec.pod_cidrs:
            causes.append(StatusCause(field="spec.podCIDRs", message=message))
    return causes


def _service_changes(new: Service, old: Service) -> list[StatusCause]:
    """The address stays what it was (a Service stored before it had one gets one from the
    API's update); a headless Service stays one that opens no node port."""
    spec = new.spec
    causes: list[StatusCause] = []
    if old.spec.cluster_ip and spec.cluster_ip != old.spec.cluster_ip:
        causes.append(invalid_value("spec.clusterIP", spec.cluster_ip, "field is immutable"))
    if spec.headless and spec.type in NODE_PORT_TYPES:
        causes.append(
            invalid_value("spec.clusterIP", HEADLESS, f"may not be set to 'None' for {spec.type} services")
        )
    return causes
