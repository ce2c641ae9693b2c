"""Node health as taints, and which pods a NoExecute taint evicts when: pure functions.

Kubernetes' rules, reduced to what steersman has. A node's Ready condition maps to one taint
key the node lifecycle controller manages: False to `node.kubernetes.io/not-ready`, Unknown (or
missing) to `node.kubernetes.io/unreachable`, True to none. The key goes on at once with the
effect NoSchedule (no new pods there), and with NoExecute (its pods are evicted) only once the
zone's eviction rate lets the node's evictions begin (`disruption`). A pod on a node with
NoExecute taints is evicted at once if it does not tolerate one of them, or once the shortest
`tolerationSeconds` of its matching tolerations has passed since that taint was added.
Kubernetes' admission gives every pod tolerations of 300 s for the two managed taints; here the
controller applies a (shorter, configurable) default to pods that have no toleration of their
own for them, so pods keep the spec they were written with.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bus.meta import ConditionStatus
from bus.resources.cluster import NodeCondition, Taint
from bus.resources.pod import PodCondition, Toleration
from bus.taints import tolerates

UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
MANAGED = frozenset({UNREACHABLE, NOT_READY})

UNKNOWN_REASON = "NodeStatusUnknown"
UNKNOWN_MESSAGE = "Node agent stopped posting node status."


def ready_status(conditions: Sequence[NodeCondition]) -> ConditionStatus:
    """The Ready condition's status; Unknown when there is none."""
    return next((c.status for c in conditions if c.type == "Ready"), "Unknown")


def health_taint(ready: ConditionStatus) -> str | None:
    """The managed taint a node with this Ready status carries (None when healthy)."""
    if ready == "True":
        return None
    return NOT_READY if ready == "False" else UNREACHABLE


def is_managed(taint: Taint) -> bool:
    return taint.key in MANAGED and taint.effect in ("NoSchedule", "NoExecute")


def with_health_taints(
    taints: Sequence[Taint], key: str | None, *, evicting: bool, at: datetime
) -> list[Taint]:
    """`taints` with `key` as the only managed key: NoSchedule, and NoExecute too when
    `evicting` (each one already there keeps its timeAdded)."""
    kept = [t for t in taints if not is_managed(t)]
    if key is None:
        return kept
    effects = ("NoSchedule", "NoExecute") if evicting else ("NoSchedule",)
    for effect in effects:
        present = next((t for t in taints if t.key == key and t.effect == effect), None)
        kept.append(present or Taint(key=key, effect=effect, time_added=at))  # type: ignore[arg-type]
    return kept


def unknown_conditions(conditions: Sequence[NodeCondition], at: datetime) -> list[NodeCondition]:
    """Every condition set to Unknown, as nobody reports them any more (heartbeats kept)."""
    previous = {c.type: c for c in conditions}
    previous.setdefault("Ready", NodeCondition(type="Ready", status="Unknown"))
    return [
        NodeCondition(
            type=c.type,
            status="Unknown",
            reason=UNKNOWN_REASON,
            message=UNKNOWN_MESSAGE,
            last_heartbeat_time=c.last_heartbeat_time,
            last_transition_time=c.last_transition_time if c.status == "Unknown" else at,
        )
        for c in previous.values()
    ]


def eviction_delay(
    tolerations: Sequence[Toleration],
    taints: Sequence[tuple[Taint, datetime]],
    *,
    default_seconds: int,
    now: datetime,
) -> float | None:
    """Seconds until a pod with `tolerations` must go from a node with these NoExecute taints
    (each with the time it was added): 0 for now, None for never."""
    delays = []
    for taint, added in taints:
        match = next((t for t in tolerations if tolerates(t, taint)), None)
        if match is None and taint.key not in MANAGED:
            return 0.0
        seconds = default_seconds if match is None else match.toleration_seconds
        if seconds is None:
            continue  # tolerated for as long as the taint stays
        delays.append(max(0.0, seconds - (now - added).total_seconds()))
    return min(delays) if delays else None


def pod_not_ready(conditions: Sequence[PodCondition], at: datetime) -> list[PodCondition] | None:
    """A pod's conditions with Ready turned False, for a pod on a silent node (None: not Ready)."""
    if not any(c.type == "Ready" and c.status == "True" for c in conditions):
        return None
    return [
        PodCondition(type="Ready", status="False", last_transition_time=at) if c.type == "Ready" else c
        for c in conditions
    ]
