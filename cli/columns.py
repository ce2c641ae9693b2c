"""What `steer get` shows for each kind, in kubectl's columns."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from bus import kinds, selectors
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

Row = list[str]


def age(stamp: datetime | None, *, now: datetime | None = None) -> str:
    """kubectl's short durations: 45s, 12m, 3h, 5d."""
    if stamp is None:
        return "<unknown>"
    seconds = int(((now or datetime.now(UTC)) - stamp).total_seconds())
    if seconds < 0:
        seconds = 0
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "d" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def pod_status(pod: Pod) -> str:
    """The one-word status kubectl shows: a container's waiting reason beats the phase."""
    if pod.metadata.deletion_timestamp is not None:
        return "Terminating"
    for status in pod.status.container_statuses:
        if status.state.waiting and status.state.waiting.reason:
            return status.state.waiting.reason
        if status.state.terminated and status.state.terminated.reason:
            return status.state.terminated.reason
    return pod.status.reason or pod.status.phase


def _pod(pod: Pod, wide: bool) -> Row:
    statuses = pod.status.container_statuses
    ready = sum(1 for s in statuses if s.ready)
    restarts = sum(s.restart_count for s in statuses)
    row = [
        f"{ready}/{len(pod.spec.containers)}",
        pod_status(pod),
        str(restarts),
        age(pod.metadata.creation_timestamp),
    ]
    if wide:
        row += [pod.status.pod_ip or "<none>", pod.spec.node_name or "<none>"]
    return row


def _deployment(d: Deployment, wide: bool) -> Row:
    s = d.status
    row = [f"{s.ready_replicas}/{d.spec.replicas}", str(s.updated_replicas), str(s.available_replicas)]
    row.append(age(d.metadata.creation_timestamp))
    if wide:
        row += [",".join(c.image for c in (d.spec.template.spec.containers if d.spec.template.spec else []))]
    return row


def _replicaset(rs: ReplicaSet, wide: bool) -> Row:
    s = rs.status
    return [
        str(rs.spec.replicas),
        str(s.replicas),
        str(s.ready_replicas),
        age(rs.metadata.creation_timestamp),
    ]


def _service(svc: Service, wide: bool) -> Row:
    ports = ",".join(
        f"{p.port}:{p.node_port}/{p.protocol}" if p.node_port else f"{p.port}/{p.protocol}"
        for p in svc.spec.ports
    )
    row = [svc.spec.type, svc.spec.cluster_ip or "<none>", external_ip(svc), ports]
    row.append(age(svc.metadata.creation_timestamp))
    if wide:
        row.append(",".join(f"{k}={v}" for k, v in svc.spec.selector.items()) or "<none>")
    return row


def external_ip(svc: Service) -> str:
    """kubectl's EXTERNAL-IP: the load balancer's addresses, `<pending>` while a LoadBalancer
    Service has none yet, `<none>` for the other types."""
    ingress = ",".join(i.ip for i in svc.status.load_balancer.ingress)
    if svc.spec.type == "LoadBalancer":
        return ingress or "<pending>"
    return "<none>"


def _allocation(record: IPAddress | NodePort, wide: bool) -> Row:
    ref = record.spec.parent_ref
    resource = f"{ref.resource}.{ref.group}" if ref.group else ref.resource
    parent = "/".join(part for part in (resource, ref.namespace, ref.name) if part)
    return [parent, age(record.metadata.creation_timestamp)]


def _endpoints(ep: Endpoints, wide: bool) -> Row:
    """kubectl's list: ready `address:port` pairs (port by port), the first three, then a count."""
    pairs: list[str] = []
    for subset in ep.subsets:
        if not subset.ports:  # a Service without ports: addresses alone
            pairs += [a.ip for a in subset.addresses]
        for port in subset.ports:
            pairs += [_host_port(a.ip, port.port) for a in subset.addresses]
    shown = ",".join(pairs[:3]) + (f" + {len(pairs) - 3} more..." if len(pairs) > 3 else "")
    return [shown or "<none>", age(ep.metadata.creation_timestamp)]


def _host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _node(node: Node, wide: bool) -> Row:
    ready = next((c for c in node.status.conditions if c.type == "Ready"), None)
    status = "Ready" if ready and ready.status == "True" else ("NotReady" if ready else "Unknown")
    if node.spec.unschedulable:
        status += ",SchedulingDisabled"
    info = node.status.node_info
    row = [status, age(node.metadata.creation_timestamp), info.kubelet_version or "<none>"]
    if wide:
        addresses = [a.address for a in node.status.addresses if a.type == "InternalIP"]
        row += [addresses[0] if addresses else "<none>", info.container_runtime_version or "<none>"]
    return row


def _namespace(ns: Namespace, wide: bool) -> Row:
    return [ns.status.phase, age(ns.metadata.creation_timestamp)]


def _hpa(hpa: HorizontalPodAutoscaler, wide: bool) -> Row:
    ref = hpa.spec.scale_target_ref
    targets = []
    for spec, current in zip(
        hpa.spec.metrics, hpa.status.current_metrics + [None] * len(hpa.spec.metrics), strict=False
    ):
        targets.append(_metric_target(spec, current))
    return [
        f"{ref.kind}/{ref.name}",
        ", ".join(targets) or "<none>",
        str(hpa.spec.min_replicas),
        str(hpa.spec.max_replicas),
        str(hpa.status.current_replicas),
        age(hpa.metadata.creation_timestamp),
    ]


def _metric_target(spec: object, current: object) -> str:
    from bus.resources.autoscaling import MetricSpec, MetricStatus

    assert isinstance(spec, MetricSpec)
    now = "<unknown>"
    if spec.resource is not None:
        want = spec.resource.target
        if isinstance(current, MetricStatus) and current.resource is not None:
            value = current.resource.current
            now = (
                f"{value.average_utilization}%"
                if value.average_utilization is not None
                else value.average_value
            )
        goal = f"{want.average_utilization}%" if want.average_utilization is not None else want.average_value
        return f"{spec.resource.name}: {now}/{goal}"
    if spec.pods is not None:
        if isinstance(current, MetricStatus) and current.pods is not None:
            now = current.pods.current.average_value
        return f"{spec.pods.metric.name}: {now}/{spec.pods.target.average_value}"
    return "<unknown>"


def event_row(ev: Event, wide: bool = False) -> Row:
    obj = ev.involved_object
    return [age(ev.last_timestamp), ev.type, ev.reason, f"{obj.kind.lower()}/{obj.name}", ev.message]


def _network_policy(policy: NetworkPolicy, wide: bool) -> Row:
    return [selectors.to_string(policy.spec.pod_selector), age(policy.metadata.creation_timestamp)]


def _lease(lease: Lease, wide: bool) -> Row:
    return [lease.spec.holder_identity or "<none>", age(lease.metadata.creation_timestamp)]


Columns = tuple[list[str], list[str], Callable[..., Row]]

COLUMNS: dict[str, Columns] = {
    "Pod": (["READY", "STATUS", "RESTARTS", "AGE"], ["IP", "NODE"], _pod),
    "Deployment": (["READY", "UP-TO-DATE", "AVAILABLE", "AGE"], ["IMAGES"], _deployment),
    "ReplicaSet": (["DESIRED", "CURRENT", "READY", "AGE"], [], _replicaset),
    "Service": (["TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], ["SELECTOR"], _service),
    "Endpoints": (["ENDPOINTS", "AGE"], [], _endpoints),
    "Node": (["STATUS", "AGE", "VERSION"], ["INTERNAL-IP", "CONTAINER-RUNTIME"], _node),
    "Namespace": (["STATUS", "AGE"], [], _namespace),
    "HorizontalPodAutoscaler": (["REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"], [], _hpa),
    "NetworkPolicy": (["POD-SELECTOR", "AGE"], [], _network_policy),
    "Event": (["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], [], event_row),
    "Lease": (["HOLDER", "AGE"], [], _lease),
    "IPAddress": (["PARENTREF", "AGE"], [], _allocation),
    "NodePort": (["PARENTREF", "AGE"], [], _allocation),
}


def header(info: kinds.KindInfo, *, wide: bool, all_namespaces: bool) -> list[str]:
    columns, extra, _ = COLUMNS[info.kind]
    names = (["NAMESPACE"] if all_namespaces and info.namespaced else []) + ["NAME"] + columns
    return names + (extra if wide else [])


def row(obj: Resource, *, wide: bool, all_namespaces: bool) -> Row:
    info = kinds.of(obj)
    _, _, render = COLUMNS[info.kind]
    prefix = [obj.metadata.namespace] if all_namespaces and info.namespaced else []
    return prefix + [obj.metadata.name] + render(obj, wide)
