"""Where a pod fits, and which fitting node is best: pure functions over a snapshot.

The filters and scores of Kubernetes' default scheduler, reduced to what steersman supports.
Filters: the node is Ready and schedulable, the pod's requests fit what is left of its
allocatable cpu, memory and pod count, its nodeSelector and required node affinity match, every
NoSchedule/NoExecute taint is tolerated, and its host ports are free. Scores (0-100 each):
least allocated and balanced resources, spreading one owner's pods, preferred node affinity,
and fewer untolerated PreferNoSchedule taints.

A pod that fits nowhere gets Kubernetes' message: `0/3 nodes are available: 2 Insufficient cpu,
1 node(s) had untolerated taint {dedicated: gpu}.`
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from bus.meta import LabelSelectorRequirement, is_true
from bus.quantity import cpu_millis, memory_bytes
from bus.resources import Node, Pod
from bus.resources.cluster import Taint
from bus.resources.pod import NodeSelectorTerm, PreferredSchedulingTerm, Toleration
from bus.taints import tolerates

# Kubernetes scores a pod without requests as if it asked for this much (non-zero defaults),
# so that such pods still spread by load.
DEFAULT_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024
MIN_NODES_TO_FIND = 100

NOT_READY = "node(s) were not ready"
UNSCHEDULABLE = "node(s) were unschedulable"
AFFINITY = "node(s) didn't match Pod's node affinity/selector"
PORTS = "node(s) didn't have free ports for the requested pod ports"
TOO_MANY_PODS = "Too many pods"


@dataclass(frozen=True)
class PodRequest:
    """What the scheduler needs of a pod, computed once."""

    key: str
    cpu: int
    memory: int
    host_ports: frozenset[tuple[int, str]]
    node_selector: dict[str, str]
    required: tuple[NodeSelectorTerm, ...]
    preferred: tuple[PreferredSchedulingTerm, ...]
    tolerations: tuple[Toleration, ...]
    owner: str
    score_cpu: int = 0  # the request, or Kubernetes' non-zero default when none
    score_memory: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "score_cpu", self.cpu or DEFAULT_CPU_REQUEST)
        object.__setattr__(self, "score_memory", self.memory or DEFAULT_MEMORY_REQUEST)


def request_of(pod: Pod) -> PodRequest:
    cpu = memory = 0
    ports: set[tuple[int, str]] = set()
    for container in pod.spec.containers:
        requests = container.resources.requests
        cpu += cpu_millis(requests["cpu"]) if "cpu" in requests else 0
        memory += memory_bytes(requests["memory"]) if "memory" in requests else 0
        ports.update((p.host_port, p.protocol) for p in container.ports if p.host_port)
    affinity = pod.spec.affinity.node_affinity if pod.spec.affinity else None
    required = affinity.required_during_scheduling_ignored_during_execution if affinity else None
    owner = next((o.uid for o in pod.metadata.owner_references if o.controller), "")
    return PodRequest(
        key=f"{pod.metadata.namespace}/{pod.metadata.name}",
        cpu=cpu,
        memory=memory,
        host_ports=frozenset(ports),
        node_selector=dict(pod.spec.node_selector),
        required=tuple(required.node_selector_terms) if required else (),
        preferred=tuple(affinity.preferred_during_scheduling_ignored_during_execution) if affinity else (),
        tolerations=tuple(pod.spec.tolerations),
        owner=owner,
    )


@dataclass
class NodeState:
    """A node and what is placed on it (bound and assumed pods)."""

    name: str
    labels: dict[str, str]
    ready: bool
    unschedulable: bool
    taints: tuple[Taint, ...]
    cpu: int
    memory: int
    pods: int
    used_cpu: int = 0
    used_memory: int = 0
    used_pods: int = 0
    score_cpu: int = 0
    score_memory: int = 0
    host_ports: Counter[tuple[int, str]] = field(default_factory=Counter)
    owners: Counter[str] = field(default_factory=Counter)
    hard_taints: tuple[Taint, ...] = ()  # NoSchedule and NoExecute: they filter
    soft_taints: tuple[Taint, ...] = ()  # PreferNoSchedule: it scores

    def __post_init__(self) -> None:
        self.hard_taints = tuple(t for t in self.taints if t.effect in ("NoSchedule", "NoExecute"))
        self.soft_taints = tuple(t for t in self.taints if t.effect == "PreferNoSchedule")

    def add(self, req: PodRequest, sign: int = 1) -> None:
        self.used_cpu += sign * req.cpu
        self.used_memory += sign * req.memory
        self.used_pods += sign
        self.score_cpu += sign * req.score_cpu
        self.score_memory += sign * req.score_memory
        for port in req.host_ports:
            self.host_ports[port] += sign
        if req.owner:
            self.owners[req.owner] += sign

    def remove(self, req: PodRequest) -> None:
        self.add(req, -1)


def node_state(node: Node) -> NodeState:
    allocatable = node.status.allocatable or node.status.capacity
    ready = is_true(node.status.conditions)
    return NodeState(
        name=node.metadata.name,
        labels=dict(node.metadata.labels),
        ready=ready,
        unschedulable=node.spec.unschedulable,
        taints=tuple(node.spec.taints),
        cpu=cpu_millis(allocatable.get("cpu", "0")),
        memory=memory_bytes(allocatable.get("memory", "0")),
        pods=int(allocatable.get("pods", "110")),
    )


# -- filters


def _untolerated(req: PodRequest, taints: Sequence[Taint]) -> list[Taint]:
    return [t for t in taints if not any(tolerates(x, t) for x in req.tolerations)]


def expression_matches(expression: LabelSelectorRequirement, labels: dict[str, str]) -> bool:
    value = labels.get(expression.key)
    match expression.operator:
        case "In":
            return value is not None and value in expression.values
        case "NotIn":
            return value is None or value not in expression.values
        case "Exists":
            return value is not None
        case "DoesNotExist":
            return value is None
    return False


def term_matches(term: NodeSelectorTerm, labels: dict[str, str]) -> bool:
    """A term's expressions all hold (a term with none matches nothing, as in Kubernetes)."""
    return bool(term.match_expressions) and all(expression_matches(e, labels) for e in term.match_expressions)


def filter_reasons(req: PodRequest, node: NodeState) -> list[str]:
    """Why the pod cannot go to the node (empty: it fits)."""
    if not node.ready:
        return [NOT_READY]
    if node.unschedulable:
        return [UNSCHEDULABLE]
    if any(node.labels.get(k) != v for k, v in req.node_selector.items()):
        return [AFFINITY]
    if req.required and not any(term_matches(t, node.labels) for t in req.required):
        return [AFFINITY]
    untolerated = _untolerated(req, node.hard_taints) if node.hard_taints else None
    if untolerated:
        taint = untolerated[0]
        return [f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"]
    reasons = []
    if node.used_pods + 1 > node.pods:
        reasons.append(TOO_MANY_PODS)
    if req.cpu and node.used_cpu + req.cpu > node.cpu:
        reasons.append("Insufficient cpu")
    if req.memory and node.used_memory + req.memory > node.memory:
        reasons.append("Insufficient memory")
    if reasons:
        return reasons
    if any(node.host_ports[p] > 0 for p in req.host_ports):
        return [PORTS]
    return []


# -- scores


def score(req: PodRequest, node: NodeState) -> float:
    cpu = (node.score_cpu + req.score_cpu) / node.cpu if node.cpu else 1.0
    memory = (node.score_memory + req.score_memory) / node.memory if node.memory else 1.0
    least_allocated = (max(0.0, 1 - cpu) + max(0.0, 1 - memory)) * 50
    balanced = (1 - min(1.0, abs(cpu - memory))) * 100
    spread = 100.0 / (1 + node.owners[req.owner]) if req.owner else 100.0
    preferred = 0.0
    if req.preferred:
        total = sum(p.weight for p in req.preferred)
        preferred = (
            100.0 * sum(p.weight for p in req.preferred if term_matches(p.preference, node.labels)) / total
        )
    soft_taints = len(_untolerated(req, node.soft_taints)) if node.soft_taints else 0
    taint_score = 100.0 / (1 + soft_taints)
    return least_allocated + balanced + 2 * spread + preferred + taint_score


# -- choosing


@dataclass(frozen=True)
class Decision:
    node: str | None
    message: str = ""
    next_start: int = 0


def nodes_to_find(total: int, *, at_most: int = MIN_NODES_TO_FIND) -> int:
    """How many feasible nodes to find before choosing.

    Kubernetes scores an adaptive share of a large cluster (percentageOfNodesToScore: 42% of
    1,000 nodes, 10% of 5,000) but never fewer than 100. Evaluating a node costs microseconds
    in Python rather than nanoseconds, so by default we stop at Kubernetes' floor of 100: the
    rotating start spreads the search over the whole cluster, and the spread score keeps one
    owner's pods apart within each sample.
    """
    return min(total, max(1, at_most))


def choose(req: PodRequest, nodes: Sequence[NodeState], *, start: int = 0) -> Decision:
    """The best of the first feasible nodes found from `start` (rotating, so that the search is
    spread over the cluster), or None with the reasons every node gave."""
    total = len(nodes)
    if not total:
        return Decision(None, "0/0 nodes are available: no nodes registered.")
    wanted = nodes_to_find(total)
    best: NodeState | None = None
    best_score = -1.0
    found = 0
    reasons: Counter[str] = Counter()
    index = start % total
    for step in range(total):
        node = nodes[(index + step) % total]
        why = filter_reasons(req, node)
        if why:
            reasons.update(why)
            continue
        found += 1
        value = score(req, node)
        if value > best_score:
            best, best_score = node, value
        if found >= wanted:
            assert best is not None
            return Decision(best.name, next_start=(index + step + 1) % total)
    if best is not None:
        return Decision(best.name, next_start=(index + 1) % total)
    return Decision(None, unschedulable_message(total, reasons))


def unschedulable_message(total: int, reasons: Counter[str]) -> str:
    parts = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    return f"0/{total} nodes are available: {parts}."
