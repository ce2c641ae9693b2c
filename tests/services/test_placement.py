"""Placement rules as tables: filters, scores, and Kubernetes' unschedulable message."""

from __future__ import annotations

from collections import Counter

import pytest

from bus.meta import LabelSelectorRequirement, ObjectMeta, OwnerReference
from bus.resources import Node, Pod
from bus.resources.cluster import NodeCondition, NodeSpec, NodeStatus, Taint
from bus.resources.pod import (
    Affinity,
    Container,
    ContainerPort,
    NodeAffinity,
    NodeSelector,
    NodeSelectorTerm,
    PodSpec,
    PreferredSchedulingTerm,
    ResourceRequirements,
    Toleration,
)
from services.scheduler.placement import (
    NodeState,
    choose,
    filter_reasons,
    node_state,
    nodes_to_find,
    request_of,
    score,
    tolerates,
    unschedulable_message,
)


def node(
    name: str,
    *,
    cpu: str = "2",
    memory: str = "4Gi",
    pods: str = "110",
    ready: bool = True,
    cordoned: bool = False,
    taints: tuple[Taint, ...] = (),
    **labels: str,
) -> NodeState:
    status = NodeStatus(
        allocatable={"cpu": cpu, "memory": memory, "pods": pods},
        conditions=[NodeCondition(type="Ready", status="True" if ready else "False")],
    )
    spec = NodeSpec(unschedulable=cordoned, taints=list(taints))
    return node_state(Node(metadata=ObjectMeta(name=name, labels=labels), spec=spec, status=status))


def pod(
    cpu: str = "",
    memory: str = "",
    *,
    host_port: int | None = None,
    selector: dict[str, str] | None = None,
    tolerations: tuple[Toleration, ...] = (),
    affinity: Affinity | None = None,
    owner: str = "",
) -> Pod:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    ports = [ContainerPort(container_port=80, host_port=host_port)] if host_port else []
    container = Container(name="c", image="i", resources=ResourceRequirements(requests=requests), ports=ports)
    refs = [OwnerReference(api_version="apps/v1", kind="ReplicaSet", name="rs", uid=owner, controller=True)]
    return Pod(
        metadata=ObjectMeta(name="p", namespace="ns", owner_references=refs if owner else []),
        spec=PodSpec(
            containers=[container],
            node_selector=selector or {},
            tolerations=list(tolerations),
            affinity=affinity,
        ),
    )


GPU = Taint(key="dedicated", value="gpu", effect="NoSchedule")


@pytest.mark.parametrize(
    "the_pod,the_node,reasons",
    [
        (pod("500m"), node("a"), []),
        (pod("3"), node("a"), ["Insufficient cpu"]),
        (pod("1", "8Gi"), node("a"), ["Insufficient memory"]),
        (pod("3", "8Gi"), node("a"), ["Insufficient cpu", "Insufficient memory"]),
        (pod(), node("a", pods="0"), ["Too many pods"]),
        (pod(), node("a", ready=False), ["node(s) were not ready"]),
        (pod(), node("a", cordoned=True), ["node(s) were unschedulable"]),
        (pod(), node("a", taints=(GPU,)), ["node(s) had untolerated taint {dedicated: gpu}"]),
        (
            pod(tolerations=(Toleration(key="dedicated", operator="Equal", value="gpu"),)),
            node("a", taints=(GPU,)),
            [],
        ),
        (pod(tolerations=(Toleration(operator="Exists"),)), node("a", taints=(GPU,)), []),
        (pod(), node("a", taints=(Taint(key="soft", effect="PreferNoSchedule"),)), []),
        (pod(selector={"disk": "ssd"}), node("a", disk="ssd"), []),
        (
            pod(selector={"disk": "ssd"}),
            node("a", disk="hdd"),
            ["node(s) didn't match Pod's node affinity/selector"],
        ),
    ],
)
def test_filters(the_pod: Pod, the_node: NodeState, reasons: list[str]) -> None:
    assert filter_reasons(request_of(the_pod), the_node) == reasons


def required(*expressions: LabelSelectorRequirement) -> Affinity:
    terms = [NodeSelectorTerm(match_expressions=list(expressions))]
    return Affinity(
        node_affinity=NodeAffinity(
            required_during_scheduling_ignored_during_execution=NodeSelector(node_selector_terms=terms)
        )
    )


@pytest.mark.parametrize(
    "expression,labels,fits",
    [
        (LabelSelectorRequirement(key="zone", operator="In", values=["a", "b"]), {"zone": "a"}, True),
        (LabelSelectorRequirement(key="zone", operator="In", values=["a"]), {"zone": "c"}, False),
        (LabelSelectorRequirement(key="zone", operator="NotIn", values=["a"]), {}, True),
        (LabelSelectorRequirement(key="zone", operator="Exists"), {}, False),
        (LabelSelectorRequirement(key="zone", operator="DoesNotExist"), {"zone": "a"}, False),
    ],
)
def test_required_node_affinity(
    expression: LabelSelectorRequirement, labels: dict[str, str], fits: bool
) -> None:
    reasons = filter_reasons(request_of(pod(affinity=required(expression))), node("a", **labels))
    assert (reasons == []) is fits


def test_host_ports_conflict_with_placed_pods() -> None:
    state = node("a")
    state.add(request_of(pod(host_port=8080)))
    assert filter_reasons(request_of(pod(host_port=8080)), state) == [
        "node(s) didn't have free ports for the requested pod ports"
    ]
    assert filter_reasons(request_of(pod(host_port=8081)), state) == []


def test_placed_requests_use_up_capacity() -> None:
    state = node("a", cpu="1")
    req = request_of(pod("600m"))
    state.add(req)
    assert filter_reasons(req, state) == ["Insufficient cpu"]
    state.remove(req)
    assert filter_reasons(req, state) == []


@pytest.mark.parametrize(
    "toleration,taint,tolerated",
    [
        (
            Toleration(key="k", operator="Equal", value="v"),
            Taint(key="k", value="v", effect="NoSchedule"),
            True,
        ),
        (
            Toleration(key="k", operator="Equal", value="x"),
            Taint(key="k", value="v", effect="NoSchedule"),
            False,
        ),
        (Toleration(key="k", operator="Exists"), Taint(key="k", value="v", effect="NoExecute"), True),
        (
            Toleration(key="k", operator="Exists", effect="NoSchedule"),
            Taint(key="k", effect="NoExecute"),
            False,
        ),
        (Toleration(operator="Exists"), Taint(key="any", effect="NoSchedule"), True),
    ],
)
def test_tolerations(toleration: Toleration, taint: Taint, tolerated: bool) -> None:
    assert tolerates(toleration, taint) is tolerated


def test_least_allocated_node_scores_higher() -> None:
    busy, idle = node("busy"), node("idle")
    busy.add(request_of(pod("1500m", "3Gi")))
    req = request_of(pod("100m", "100Mi"))
    assert score(req, idle) > score(req, busy)
    assert choose(req, [busy, idle]).node == "idle"


def test_one_owners_pods_spread_over_nodes() -> None:
    nodes = [node("a"), node("b"), node("c")]
    placed = Counter[str]()
    for _ in range(6):
        req = request_of(pod("100m", owner="rs-1"))
        decision = choose(req, nodes)
        assert decision.node is not None
        next(n for n in nodes if n.name == decision.node).add(req)
        placed[decision.node] += 1
    assert sorted(placed.values()) == [2, 2, 2]


def test_preferred_affinity_and_soft_taints_steer_the_choice() -> None:
    term = NodeSelectorTerm(
        match_expressions=[LabelSelectorRequirement(key="zone", operator="In", values=["b"])]
    )
    preferred = Affinity(
        node_affinity=NodeAffinity(
            preferred_during_scheduling_ignored_during_execution=[
                PreferredSchedulingTerm(weight=50, preference=term)
            ]
        )
    )
    assert choose(request_of(pod(affinity=preferred)), [node("a", zone="a"), node("b", zone="b")]).node == "b"
    soft = Taint(key="spot", effect="PreferNoSchedule")
    assert choose(request_of(pod()), [node("a", taints=(soft,)), node("b")]).node == "b"


def test_message_when_nothing_fits() -> None:
    nodes = [node("a", cpu="1"), node("b", cpu="1"), node("c", taints=(GPU,))]
    decision = choose(request_of(pod("2")), nodes)
    assert decision.node is None
    assert decision.message == (
        "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}."
    )


def test_message_formats() -> None:
    assert unschedulable_message(5, Counter({"Insufficient memory": 2, "Insufficient cpu": 3})) == (
        "0/5 nodes are available: 3 Insufficient cpu, 2 Insufficient memory."
    )
    assert choose(request_of(pod()), []).message == "0/0 nodes are available: no nodes registered."


@pytest.mark.parametrize("total,wanted", [(3, 3), (100, 100), (1000, 100), (5000, 100)])
def test_how_many_nodes_are_scored(total: int, wanted: int) -> None:
    assert nodes_to_find(total) == wanted


def test_the_search_rotates_over_the_cluster() -> None:
    nodes = [node(f"n{i}") for i in range(300)]
    first = choose(request_of(pod()), nodes, start=0)
    second = choose(request_of(pod()), nodes, start=first.next_start)
    assert first.next_start == 100 and second.next_start == 200  # 100 feasible nodes per decision
