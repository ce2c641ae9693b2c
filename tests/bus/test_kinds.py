"""The kind registry: what users may type for a kind, and each kind's apiVersion and scope."""

from __future__ import annotations

import pytest

from bus import kinds
from bus.errors import BadRequest
from bus.meta import ObjectMeta
from bus.resources import Lease, Namespace, Pod
from bus.resources.pod import PodSpec

TYPED: list[tuple[str, str]] = [
    # plural, singular, short name, Kind name, in any case
    ("pods", "Pod"),
    ("pod", "Pod"),
    ("po", "Pod"),
    ("Pod", "Pod"),
    ("PODS", "Pod"),
    ("PO", "Pod"),
    ("deploy", "Deployment"),
    ("deployments", "Deployment"),
    ("Deployment", "Deployment"),
    ("rs", "ReplicaSet"),
    ("replicaset", "ReplicaSet"),
    ("ReplicaSets", "ReplicaSet"),
    ("svc", "Service"),
    ("service", "Service"),
    ("ep", "Endpoints"),
    ("endpoints", "Endpoints"),
    ("no", "Node"),
    ("node", "Node"),
    ("NODES", "Node"),
    ("ns", "Namespace"),
    ("namespace", "Namespace"),
    ("hpa", "HorizontalPodAutoscaler"),
    ("HorizontalPodAutoscaler", "HorizontalPodAutoscaler"),
    ("horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    ("ev", "Event"),
    ("events", "Event"),
    ("lease", "Lease"),
    ("leases", "Lease"),
    # qualified with the group
    ("deployment.apps", "Deployment"),
    ("deployments.apps", "Deployment"),
    ("deploy.apps", "Deployment"),
    ("Deployment.Apps", "Deployment"),
    ("rs.apps", "ReplicaSet"),
    ("replicasets.apps", "ReplicaSet"),
    ("hpa.autoscaling", "HorizontalPodAutoscaler"),
    ("horizontalpodautoscaler.autoscaling", "HorizontalPodAutoscaler"),
    ("lease.coordination.k8s.io", "Lease"),
    ("leases.coordination.k8s.io", "Lease"),
    ("ip", "IPAddress"),
    ("ipaddresses", "IPAddress"),
    ("IPAddress", "IPAddress"),
    ("ipaddress.networking.k8s.io", "IPAddress"),
    ("ipaddresses.networking.k8s.io", "IPAddress"),
    ("nodeports", "NodePort"),
    ("nodeport.networking.steersman.io", "NodePort"),
    ("netpol", "NetworkPolicy"),
    ("networkpolicies", "NetworkPolicy"),
    ("NetworkPolicy", "NetworkPolicy"),
    ("networkpolicy.networking.k8s.io", "NetworkPolicy"),
    ("netpol.networking.k8s.io", "NetworkPolicy"),
]


@pytest.mark.parametrize(("typed", "kind"), TYPED)
def test_resolve(typed: str, kind: str) -> None:
    assert kinds.resolve(typed).kind == kind


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "pdo",
        "pod.apps",
        "deployment.core",
        "deployments.",
        "apps",
        "p",
        "pods.v1",
        "deployment.extensions",
    ],
)
def test_resolve_unknown(typed: str) -> None:
    with pytest.raises(BadRequest) as caught:
        kinds.resolve(typed)
    assert caught.value.message == f'the server doesn\'t have a resource type "{typed}"'


@pytest.mark.parametrize(
    ("kind", "api_version", "group", "namespaced", "qualified", "qualified_plural"),
    [
        ("Namespace", "v1", "", False, "namespace", "namespaces"),
        ("Node", "v1", "", False, "node", "nodes"),
        ("Pod", "v1", "", True, "pod", "pods"),
        ("ReplicaSet", "apps/v1", "apps", True, "replicaset.apps", "replicasets.apps"),
        ("Deployment", "apps/v1", "apps", True, "deployment.apps", "deployments.apps"),
        ("Service", "v1", "", True, "service", "services"),
        ("Endpoints", "v1", "", True, "endpoints", "endpoints"),
        (
            "HorizontalPodAutoscaler",
            "autoscaling/v2",
            "autoscaling",
            True,
            "horizontalpodautoscaler.autoscaling",
            "horizontalpodautoscalers.autoscaling",
        ),
        ("Event", "v1", "", True, "event", "events"),
        (
            "Lease",
            "coordination.k8s.io/v1",
            "coordination.k8s.io",
            True,
            "lease.coordination.k8s.io",
            "leases.coordination.k8s.io",
        ),
        (
            "IPAddress",
            "networking.k8s.io/v1",
            "networking.k8s.io",
            False,
            "ipaddress.networking.k8s.io",
            "ipaddresses.networking.k8s.io",
        ),
        (
            "NetworkPolicy",
            "networking.k8s.io/v1",
            "networking.k8s.io",
            True,
            "networkpolicy.networking.k8s.io",
            "networkpolicies.networking.k8s.io",
        ),
    ],
)
def test_kind_info(
    kind: str, api_version: str, group: str, namespaced: bool, qualified: str, qualified_plural: str
) -> None:
    info = kinds.by_kind(kind)
    assert info.kind == kind
    assert info.type.__name__ == kind
    assert info.api_version == api_version
    assert info.group == group
    assert info.namespaced is namespaced
    assert info.qualified == qualified
    assert info.qualified_plural == qualified_plural
    assert info.singular == kind.lower()
    assert kinds.BY_PLURAL[info.plural] is info
    assert kinds.resolve(qualified) is info
    assert kinds.resolve(qualified_plural) is info


def test_every_kind_is_in_the_table() -> None:
    assert {info.kind for info in kinds.KINDS} == {
        "Namespace",
        "Node",
        "Pod",
        "ReplicaSet",
        "Deployment",
        "Service",
        "IPAddress",
        "NodePort",
        "Endpoints",
        "HorizontalPodAutoscaler",
        "Event",
        "Lease",
        "NetworkPolicy",
    }


@pytest.mark.parametrize("kind", ["pod", "Pods", "Widget", ""])
def test_by_kind_is_exact(kind: str) -> None:
    with pytest.raises(BadRequest, match=rf'^no kind "{kind}" is registered \(known kinds: Deployment, '):
        kinds.by_kind(kind)


@pytest.mark.parametrize(
    ("obj", "kind"),
    [
        (Pod(metadata=ObjectMeta(name="p"), spec=PodSpec(containers=[])), "Pod"),
        (Namespace(), "Namespace"),
        (Lease(), "Lease"),
    ],
)
def test_of(obj: Pod | Namespace | Lease, kind: str) -> None:
    assert kinds.of(obj) is kinds.BY_KIND[kind]
    assert obj.api_version == kinds.BY_KIND[kind].api_version
