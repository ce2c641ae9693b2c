"""The order and adjustments of `steer restore` (cli/restoreplan.py), without a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from bus.meta import Resource
from bus.resources import Deployment, ReplicaSet
from bus.validation import decode_object
from cli import restoreplan

SELECTOR = {"matchLabels": {"app": "a"}}
TEMPLATE = {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}


def obj(kind: str, name: str, uid: str, *, owner: str = "", namespace: str = "ns", **extra: Any) -> Resource:
    api_version, body = {
        "Namespace": ("v1", {}),
        "Node": ("v1", {}),
        "Deployment": ("apps/v1", {"spec": {"selector": SELECTOR, "template": TEMPLATE}}),
        "ReplicaSet": ("apps/v1", {"spec": {"selector": SELECTOR, "template": TEMPLATE}}),
        "Pod": ("v1", {"spec": TEMPLATE["spec"]}),
        "Service": ("v1", {"spec": {"ports": [{"port": 80}]}}),
    }[kind]
    metadata: dict[str, Any] = {"name": name, "uid": uid, **extra}
    if kind not in {"Namespace", "Node"}:
        metadata["namespace"] = namespace
    if owner:
        owner_kind, owner_name, owner_uid = owner.split("/")
        version = "apps/v1" if owner_kind in {"Deployment", "ReplicaSet"} else "v1"
        ref = {"apiVersion": version, "kind": owner_kind, "name": owner_name, "uid": owner_uid}
        metadata["ownerReferences"] = [{**ref, "controller": True}]
    return decode_object({"apiVersion": api_version, "kind": kind, "metadata": metadata, **body})


def names(objects: list[Resource]) -> list[str]:
    return [f"{o.kind}/{o.metadata.name}" for o in objects]


def test_namespaces_then_cluster_objects_then_owners_before_dependents() -> None:
    pod = obj("Pod", "web-1", "u-pod", owner="ReplicaSet/web-rs/u-rs")
    rs = obj("ReplicaSet", "web-rs", "u-rs", owner="Deployment/web/u-deploy")
    deploy = obj("Deployment", "web", "u-deploy")
    lone = obj("Pod", "alone", "u-alone")
    svc = obj("Service", "web", "u-svc")
    node, namespace = obj("Node", "n1", "u-n1"), obj("Namespace", "ns", "u")
    ordered = restoreplan.order([pod, svc, rs, node, lone, deploy, namespace])
    assert names(ordered) == [
        "Namespace/ns",
        "Node/n1",
        "Pod/alone",
        "Deployment/web",
        "Service/web",
        "ReplicaSet/web-rs",
        "Pod/web-1",
    ]


def test_an_ownership_cycle_does_not_hang_the_order() -> None:
    a = obj("Pod", "a", "u-a", owner="Pod/b/u-b")
    b = obj("Pod", "b", "u-b", owner="Pod/a/u-a")
    assert sorted(names(restoreplan.order([a, b]))) == ["Pod/a", "Pod/b"]


def test_owner_uids_follow_the_restored_owners() -> None:
    rs = obj("ReplicaSet", "web-rs", "u-rs", owner="Deployment/web/old-deploy", resourceVersion="41")
    sent = restoreplan.for_create(rs, {"old-deploy": "new-deploy"})
    assert [ref.uid for ref in sent.metadata.owner_references] == ["new-deploy"]
    assert sent.metadata.resource_version == ""
    unknown = restoreplan.for_create(rs, {})
    assert [ref.uid for ref in unknown.metadata.owner_references] == ["old-deploy"]
    assert [ref.uid for ref in rs.metadata.owner_references] == ["old-deploy"]  # the backup is untouched


@pytest.mark.parametrize(
    ("backed_up_generation", "observed", "restored_observed"),
    [(3, 3, 1), (3, 2, 0), (1, 1, 1)],
)
def test_observed_generation_follows_the_new_generation(
    backed_up_generation: int, observed: int, restored_observed: int
) -> None:
    original = obj("ReplicaSet", "web-rs", "u-rs", generation=backed_up_generation)
    assert isinstance(original, ReplicaSet)
    original.status.replicas = 2
    original.status.observed_generation = observed
    stored = obj("ReplicaSet", "web-rs", "u-new", generation=1, resourceVersion="7")
    status = restoreplan.status_to_restore(original, stored)
    assert isinstance(status, ReplicaSet)
    assert status.status.replicas == 2 and status.status.observed_generation == restored_observed
    assert status.metadata.uid == "u-new" and status.metadata.resource_version == "7"


def test_no_status_call_for_an_empty_status() -> None:
    original = obj("Deployment", "web", "u")
    assert isinstance(original, Deployment)
    assert restoreplan.status_to_restore(original, obj("Deployment", "web", "u2")) is None
