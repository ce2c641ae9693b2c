"""Server-set metadata on create and update, generation, and immutable fields."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from bus import kinds
from bus.errors import Invalid, StatusCause
from bus.meta import LabelSelector, ObjectMeta, ObjectReference, Resource
from bus.resources import Deployment, Event, Namespace, Node, Pod, ReplicaSet, Service
from bus.resources.apps import DeploymentSpec, DeploymentStatus, ReplicaSetSpec
from bus.resources.cluster import NamespaceStatus, NodeCondition, NodeSpec, NodeStatus
from bus.resources.networking import IPFamilyPolicy, ServicePort, ServiceSpec, ServiceType
from bus.resources.pod import Container, PodSpec, PodStatus, PodTemplateSpec
from services.api import admission
from services.api.admission import generated_name, prepare_create, prepare_update

STAMP = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)
OLD_STAMP = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission, "now", lambda: STAMP)


def pod(
    *, name: str = "web", node: str = "", image: str = "nginx", labels: dict[str, str] | None = None
) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace="default", labels=labels or {}),
        spec=PodSpec(containers=[Container(name="app", image=image)], node_name=node),
    )


def deployment(*, replicas: int = 1, app: str = "web") -> Deployment:
    spec = DeploymentSpec(
        selector=LabelSelector(match_labels={"app": app}), template=PodTemplateSpec(), replicas=replicas
    )
    return Deployment(metadata=ObjectMeta(name="web", namespace="default"), spec=spec)


def replicaset(*, app: str = "web") -> ReplicaSet:
    spec = ReplicaSetSpec(selector=LabelSelector(match_labels={"app": app}), template=PodTemplateSpec())
    return ReplicaSet(metadata=ObjectMeta(name="web-1", namespace="default"), spec=spec)


def event(message: str = "m") -> Event:
    return Event(
        metadata=ObjectMeta(name="web.1", namespace="default"),
        involved_object=ObjectReference(kind="Pod", name="web"),
        message=message,
    )


def dirty(obj: Resource) -> Resource:
    """Client-supplied values the server must overwrite."""
    meta = obj.metadata
    meta.uid, meta.resource_version, meta.generation = "client-uid", "42", 9
    meta.creation_timestamp = meta.deletion_timestamp = OLD_STAMP
    meta.deletion_grace_period_seconds = 30
    return obj


def stored(obj: Resource, *, generation: int = 3) -> Resource:
    """What the store holds: server fields set."""
    meta = obj.metadata
    meta.uid, meta.resource_version, meta.generation, meta.creation_timestamp = (
        "old-uid",
        "5",
        generation,
        OLD_STAMP,
    )
    return obj


@pytest.mark.parametrize(
    "obj",
    [dirty(pod()), dirty(deployment()), dirty(event()), dirty(Node(metadata=ObjectMeta(name="n1")))],
    ids=["pod", "deployment", "event", "node"],
)
def test_prepare_create_sets_server_fields(obj: Resource) -> None:
    prepare_create(obj, kinds.of(obj))
    meta = obj.metadata
    assert str(uuid.UUID(meta.uid)) == meta.uid
    assert meta.creation_timestamp == STAMP
    assert meta.generation == 1
    assert meta.resource_version == ""
    assert meta.deletion_timestamp is None
    assert meta.deletion_grace_period_seconds is None


def test_prepare_create_gives_fresh_uids() -> None:
    uids = set()
    for _ in range(20):
        obj = pod()
        prepare_create(obj, kinds.of(obj))
        uids.add(obj.metadata.uid)
    assert len(uids) == 20


def with_status(obj: Resource, status: object) -> Resource:
    obj.status = status
    return obj


@pytest.mark.parametrize(
    ("obj", "cleared"),
    [
        (with_status(pod(), PodStatus(phase="Running", pod_ip="10.0.0.1")), PodStatus()),
        (with_status(deployment(), DeploymentStatus(replicas=5, ready_replicas=5)), DeploymentStatus()),
        (
            with_status(Namespace(metadata=ObjectMeta(name="prod")), NamespaceStatus(phase="Terminating")),
            NamespaceStatus(phase="Active"),
        ),
    ],
    ids=["pod", "deployment", "namespace"],
)
def test_prepare_create_clears_status(obj: Resource, cleared: object) -> None:
    assert obj.status != cleared
    prepare_create(obj, kinds.of(obj))
    assert obj.status == cleared


def test_prepare_create_keeps_a_nodes_status() -> None:
    status = NodeStatus(capacity={"cpu": "4"}, conditions=[NodeCondition(type="Ready", status="True")])
    node = Node(metadata=ObjectMeta(name="n1"), status=status)
    prepare_create(node, kinds.of(node))
    assert node.status == NodeStatus(
        capacity={"cpu": "4"}, conditions=[NodeCondition(type="Ready", status="True")]
    )


@pytest.mark.parametrize(
    ("name", "generate_name", "pattern"),
    [
        ("", "web-", r"web-[a-z0-9]{5}"),
        ("", "x", r"x[a-z0-9]{5}"),
        ("", "a" * 70, r"a{58}[a-z0-9]{5}"),
        ("fixed", "web-", r"fixed"),
        ("fixed", "", r"fixed"),
    ],
)
def test_generate_name(name: str, generate_name: str, pattern: str) -> None:
    obj = pod(name=name)
    obj.metadata.generate_name = generate_name
    prepare_create(obj, kinds.of(obj))
    assert re.fullmatch(pattern, obj.metadata.name), obj.metadata.name
    assert len(obj.metadata.name) <= 63


def test_generated_names_differ() -> None:
    assert len({generated_name("web-") for _ in range(50)}) > 45


def test_prepare_update_carries_server_fields() -> None:
    old = stored(pod(node="n1"))
    old.metadata.deletion_timestamp = STAMP
    old.metadata.deletion_grace_period_seconds = 30
    old.metadata.generate_name = "web-"
    old.status = PodStatus(phase="Running", pod_ip="10.0.0.9")
    new = pod(node="n1")
    new.metadata.uid, new.metadata.generate_name = "forged", "other-"
    new.status = PodStatus(phase="Failed")
    prepare_update(new, old)
    assert new.metadata.uid == "old-uid"
    assert new.metadata.creation_timestamp == OLD_STAMP
    assert new.metadata.deletion_timestamp == STAMP
    assert new.metadata.deletion_grace_period_seconds == 30
    assert new.metadata.generate_name == "web-"
    assert new.status == PodStatus(phase="Running", pod_ip="10.0.0.9")


@pytest.mark.parametrize(
    ("old", "new", "generation"),
    [
        (pod(), pod(), 3),
        (pod(), pod(labels={"tier": "fe"}), 3),
        (pod(), pod(image="nginx:2"), 4),
        (pod(), pod(node="n1"), 4),
        (deployment(), deployment(), 3),
        (deployment(), deployment(replicas=4), 4),
        (event(), event(), 3),
        (event(), event("changed"), 4),
    ],
    ids=[
        "pod-same",
        "pod-labels",
        "pod-image",
        "pod-bind",
        "dep-same",
        "dep-scale",
        "event-same",
        "event-body",
    ],
)
def test_generation_moves_only_with_the_spec(old: Resource, new: Resource, generation: int) -> None:
    stored(old)
    new.metadata.generation = 77
    prepare_update(new, old)
    assert new.metadata.generation == generation


def test_status_change_alone_does_not_bump_generation() -> None:
    old = stored(deployment())
    new = deployment()
    new.status = DeploymentStatus(replicas=9)
    prepare_update(new, old)
    assert new.metadata.generation == 3
    assert new.status == DeploymentStatus()


NODE_NAME = StatusCause(field="spec.nodeName", message="field is immutable once set")
SELECTOR = StatusCause(field="spec.selector", message="field is immutable")
CIDR_MESSAGE = 'node updates may not change podCIDR except from "" to valid'
POD_CIDR = StatusCause(field="spec.podCIDR", message=CIDR_MESSAGE)
POD_CIDRS = StatusCause(field="spec.podCIDRs", message=CIDR_MESSAGE)


def node(cidr: str = "", *, cidrs: list[str] | None = None, unschedulable: bool = False) -> Node:
    spec = NodeSpec(
        pod_cidr=cidr,
        pod_cidrs=[cidr] if cidrs is None and cidr else cidrs or [],
        unschedulable=unschedulable,
    )
    return Node(metadata=ObjectMeta(name="n1"), spec=spec)


@pytest.mark.parametrize(
    ("old", "new", "causes"),
    [
        (pod(node=""), pod(node="n1"), []),
        (pod(node="n1"), pod(node="n1"), []),
        (pod(node="n1"), pod(node="n2"), [NODE_NAME]),
        (pod(node="n1"), pod(node=""), [NODE_NAME]),
        (deployment(), deployment(replicas=3), []),
        (deployment(app="web"), deployment(app="api"), [SELECTOR]),
        (replicaset(app="web"), replicaset(app="api"), [SELECTOR]),
        (node(), node("10.244.1.0/24"), []),
        (node("10.244.1.0/24"), node("10.244.1.0/24", unschedulable=True), []),
        (node("10.244.1.0/24"), node("10.244.2.0/24"), [POD_CIDR, POD_CIDRS]),
        (node("10.244.1.0/24"), node(), [POD_CIDR, POD_CIDRS]),
        (node("10.244.1.0/24", cidrs=[]), node("10.244.1.0/24", cidrs=["10.244.1.0/24"]), []),
    ],
    ids=[
        "bind",
        "same-node",
        "move",
        "unbind",
        "scale",
        "dep-selector",
        "rs-selector",
        "cidr-set",
        "cidr-kept",
        "cidr-changed",
        "cidr-cleared",
        "cidrs-filled",
    ],
)
def test_immutable_fields(old: Resource, new: Resource, causes: list[StatusCause]) -> None:
    stored(old)
    assert admission.immutable_changes(new, old) == causes
    if not causes:
        prepare_update(new, old)
        return
    with pytest.raises(Invalid) as caught:
        prepare_update(new, old)
    assert caught.value.causes == causes
    assert caught.value.message == f'{new.kind} "{new.metadata.name}" is invalid'


def service(
    cluster_ip: str = "",
    *,
    cluster_ips: list[str] | None = None,
    type_: ServiceType = "ClusterIP",
    policy: IPFamilyPolicy | None = None,
    port: int = 80,
) -> Service:
    spec = ServiceSpec(
        ports=[ServicePort(port=port)],
        type=type_,
        cluster_ip=cluster_ip,
        cluster_ips=cluster_ips or [],
        ip_family_policy=policy,
    )
    return Service(metadata=ObjectMeta(name="web", namespace="default"), spec=spec)


def allocated(cluster_ip: str, **kwargs: Any) -> Service:
    svc = service(cluster_ip, **kwargs)
    admission.set_defaults(svc)
    return svc


@pytest.mark.parametrize(
    ("given", "cluster_ips", "policy"),
    [
        (service("10.96.0.7"), ["10.96.0.7"], "SingleStack"),
        (service("10.96.0.7", policy="PreferDualStack"), ["10.96.0.7"], "SingleStack"),
        (service("None"), ["None"], "SingleStack"),
        (service(""), [], "SingleStack"),
    ],
)
def test_service_defaults(given: Service, cluster_ips: list[str], policy: str) -> None:
    admission.set_defaults(given)
    spec = given.spec
    assert (spec.cluster_ips, spec.ip_families, spec.ip_family_policy) == (cluster_ips, ["IPv4"], policy)


def immutable_ip(value: str) -> StatusCause:
    return StatusCause(field="spec.clusterIP", message=f'Invalid value: "{value}": field is immutable')


def no_none(type_: str) -> StatusCause:
    return StatusCause(
        field="spec.clusterIP",
        message=f"Invalid value: \"None\": may not be set to 'None' for {type_} services",
    )


@pytest.mark.parametrize(
    ("old", "new", "causes", "kept"),
    [
        (allocated("10.96.0.7"), service(port=81), [], "10.96.0.7"),
        (allocated("10.96.0.7"), service("10.96.0.7", port=81), [], "10.96.0.7"),
        (allocated("10.96.0.7"), service(cluster_ips=["10.96.0.7"]), [], "10.96.0.7"),
        (allocated("10.96.0.7"), service("10.96.0.8"), [immutable_ip("10.96.0.8")], "10.96.0.8"),
        (
            allocated("10.96.0.7"),
            service(cluster_ips=["10.96.0.9"]),
            [immutable_ip("10.96.0.9")],
            "10.96.0.9",
        ),
        (allocated("10.96.0.7"), service("None"), [immutable_ip("None")], "None"),
        (allocated("None"), service("10.96.0.7"), [immutable_ip("10.96.0.7")], "10.96.0.7"),
        (allocated("None"), service(port=81), [], "None"),
        (allocated("None"), service(type_="NodePort"), [no_none("NodePort")], "None"),
        (allocated("None"), service(type_="LoadBalancer"), [no_none("LoadBalancer")], "None"),
        (allocated("10.96.0.7"), service(type_="LoadBalancer"), [], "10.96.0.7"),
        (service(""), service(""), [], ""),  # stored before Services had addresses: the API gives one
    ],
    ids=[
        "omitted-kept",
        "same",
        "clusterIPs-only",
        "changed",
        "clusterIPs-changed",
        "made-headless",
        "headless-given-one",
        "headless-kept",
        "headless-nodeport",
        "headless-loadbalancer",
        "to-loadbalancer",
        "legacy",
    ],
)
def test_service_address_on_update(old: Service, new: Service, causes: list[StatusCause], kept: str) -> None:
    stored(old)
    if causes:
        with pytest.raises(Invalid) as caught:
            prepare_update(new, old)
        assert caught.value.causes == causes
    else:
        prepare_update(new, old)
        if kept:
            assert (new.spec.cluster_ips, new.spec.ip_family_policy) == ([kept], "SingleStack")
    assert new.spec.cluster_ip == kept


def test_service_update_leaving_the_address_out_is_no_change() -> None:
    old = stored(allocated("10.96.0.7"))
    new = service()
    prepare_update(new, old)
    assert new.metadata.generation == old.metadata.generation
    assert new.spec == old.spec
