"""The API service, two replicas in one queue group, against a real nats-server."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from bus import kinds, subjects
from bus.client import Client
from bus.errors import AlreadyExists, BadRequest, Conflict, Forbidden, Invalid, NotFound, TooLarge
from bus.meta import LabelSelector, ObjectMeta
from bus.protocol import ERROR_CODE_HEADER
from bus.resources import Deployment, Endpoints, Event, Namespace, Node, Pod, Service
from bus.resources.apps import DeploymentSpec
from bus.resources.networking import (
    EndpointAddress,
    EndpointPort,
    EndpointSubset,
    ServicePort,
    ServiceSpec,
)
from bus.resources.pod import Container, PodSpec, PodTemplateSpec


def pod(name: str, namespace: str, **labels: str) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=namespace, labels=labels),
        spec=PodSpec(containers=[Container(name="main", image="busybox:local")]),
    )


def deployment(name: str, namespace: str, replicas: int = 2) -> Deployment:
    labels = {"app": name}
    return Deployment(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=DeploymentSpec(
            replicas=replicas,
            selector=LabelSelector(match_labels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels),
                spec=PodSpec(containers=[Container(name="web", image="busybox:local")]),
            ),
        ),
    )


async def test_create_sets_server_fields(client: Client, ns: str) -> None:
    created = await client.create(pod("a", ns))
    meta = created.metadata
    assert meta.uid and meta.creation_timestamp is not None
    assert meta.generation == 1 and int(meta.resource_version) > 0
    assert created.status.phase == "Pending"
    assert await client.get(Pod, "a", ns) == created


async def test_create_ignores_client_set_server_fields(client: Client, ns: str) -> None:
    obj = pod("a", ns)
    obj.metadata.uid = "mine"
    obj.metadata.generation = 42
    obj.status.phase = "Running"
    created = await client.create(obj)
    assert created.metadata.uid != "mine"
    assert created.metadata.generation == 1
    assert created.status.phase == "Pending"


async def test_duplicate_name_is_already_exists(client: Client, ns: str) -> None:
    await client.create(pod("a", ns))
    with pytest.raises(AlreadyExists):
        await client.create(pod("a", ns))


async def test_namespace_must_exist(client: Client) -> None:
    with pytest.raises(NotFound, match='namespaces "nowhere" not found'):
        await client.create(pod("a", "nowhere"))


async def test_generation_bumps_on_spec_change_only(client: Client, ns: str) -> None:
    created = await client.create(deployment("web", ns))
    created.metadata.labels = {"team": "a"}
    relabelled = await client.update(created)
    assert relabelled.metadata.generation == 1
    relabelled.spec.replicas = 5
    scaled = await client.update(relabelled)
    assert scaled.metadata.generation == 2
    assert int(scaled.metadata.resource_version) > int(relabelled.metadata.resource_version)


async def test_stale_update_is_conflict_and_changes_nothing(client: Client, ns: str) -> None:
    created = await client.create(deployment("web", ns))
    fresh = msgspec.structs.replace(created)
    fresh.spec.replicas = 3
    await client.update(fresh)
    created.spec.replicas = 9
    with pytest.raises(Conflict):
        await client.update(created)
    assert (await client.get(Deployment, "web", ns)).spec.replicas == 3


async def test_update_without_changes_keeps_resource_version(client: Client, ns: str) -> None:
    created = await client.create(deployment("web", ns))
    again = await client.update(created)
    assert again.metadata.resource_version == created.metadata.resource_version


async def test_update_cannot_write_status(client: Client, ns: str) -> None:
    created = await client.create(pod("a", ns))
    created.status.phase = "Running"
    updated = await client.update(created)
    assert updated.status.phase == "Pending"


async def test_status_verb_writes_only_status(client: Client, ns: str) -> None:
    created = await client.create(deployment("web", ns))
    created.status.ready_replicas = 2
    created.spec.replicas = 7
    written = await client.update_status(created)
    assert written.status.ready_replicas == 2
    assert written.spec.replicas == 2
    assert written.metadata.generation == 1


async def test_merge_patch(client: Client, ns: str) -> None:
    await client.create(deployment("web", ns))
    patched = await client.patch(
        Deployment, "web", {"spec": {"replicas": 4}, "metadata": {"labels": {"tier": "front"}}}, ns
    )
    assert patched.spec.replicas == 4 and patched.metadata.labels == {"tier": "front"}
    assert patched.metadata.generation == 2
    removed = await client.patch(Deployment, "web", {"metadata": {"labels": {"tier": None}}}, ns)
    assert removed.metadata.labels == {}


async def test_patch_that_breaks_validation_is_invalid_and_stores_nothing(client: Client, ns: str) -> None:
    await client.create(deployment("web", ns))
    with pytest.raises(Invalid) as caught:
        await client.patch(
            Deployment, "web", {"spec": {"replicas": -1, "template": {"spec": {"volumes": []}}}}, ns
        )
    fields = {cause.field for cause in caught.value.causes}
    assert {"spec.replicas", "spec.template.spec.volumes"} <= fields
    assert (await client.get(Deployment, "web", ns)).spec.replicas == 2


async def test_patch_with_stale_resource_version_is_conflict(client: Client, ns: str) -> None:
    created = await client.create(deployment("web", ns))
    await client.patch(Deployment, "web", {"spec": {"replicas": 3}}, ns)
    with pytest.raises(Conflict):
        stale = {"metadata": {"resourceVersion": created.metadata.resource_version}, "spec": {"replicas": 1}}
        await client.patch(Deployment, "web", stale, ns)


async def test_list_with_label_selector_and_all_namespaces(client: Client, ns: str) -> None:
    await client.create(pod("a", ns, app="web"))
    await client.create(pod("b", ns, app="db"))
    names = [p.metadata.name for p in await client.list(Pod, ns, label_selector="app in (web)")]
    assert names == ["a"]
    everywhere = await client.list(Pod, "*", label_selector="app=web")
    assert (ns, "a") in {(p.metadata.namespace, p.metadata.name) for p in everywhere}
    with pytest.raises(BadRequest, match="invalid label selector"):
        await client.list(Pod, ns, label_selector="app in (")


async def test_cluster_scoped_kinds(client: Client) -> None:
    node = await client.create(Node(metadata=ObjectMeta(name="n-cluster-scope")))
    assert node.metadata.namespace == ""
    assert await client.get(Node, "n-cluster-scope", "") == node
    await client.delete(Node, "n-cluster-scope", "")
    with pytest.raises(NotFound):
        await client.get(Node, "n-cluster-scope", "")


async def test_delete_unbound_pod_is_immediate(client: Client, ns: str) -> None:
    await client.create(pod("a", ns))
    final = await client.delete(Pod, "a", ns)
    assert final.metadata.name == "a"
    with pytest.raises(NotFound):
        await client.get(Pod, "a", ns)


async def test_delete_bound_pod_marks_it_terminating(client: Client, ns: str) -> None:
    obj = pod("a", ns)
    obj.spec.node_name = "n1"
    await client.create(obj)
    marked = await client.delete(Pod, "a", ns)
    assert marked.metadata.deletion_timestamp is not None
    assert marked.metadata.deletion_grace_period_seconds == 30
    gone = await client.delete(Pod, "a", ns, grace_period_seconds=0)
    assert gone.metadata.name == "a"
    with pytest.raises(NotFound):
        await client.get(Pod, "a", ns)


async def test_finalizers_hold_deletion_until_removed(client: Client, ns: str) -> None:
    obj = deployment("web", ns)
    obj.metadata.finalizers = ["example.com/hold"]
    await client.create(obj)
    marked = await client.delete(Deployment, "web", ns)
    assert marked.metadata.deletion_timestamp is not None
    await client.patch(Deployment, "web", {"metadata": {"finalizers": None}}, ns)
    with pytest.raises(NotFound):
        await client.get(Deployment, "web", ns)


async def test_delete_with_stale_precondition_is_conflict(client: Client, ns: str) -> None:
    created = await client.create(pod("a", ns))
    await client.patch(Pod, "a", {"metadata": {"labels": {"x": "y"}}}, ns)
    with pytest.raises(Conflict):
        await client.delete(Pod, "a", ns, resource_version=created.metadata.resource_version)


async def test_default_namespace_cannot_be_deleted(client: Client) -> None:
    with pytest.raises(Forbidden):
        await client.delete(Namespace, "default", "")


async def test_deleting_a_namespace_deletes_its_content(client: Client, ns: str) -> None:
    await client.create(pod("a", ns))
    await client.create(deployment("web", ns))
    await client.delete(Namespace, ns, "")
    assert await client.list(Pod, ns) == []
    assert await client.list(Deployment, ns) == []
    with pytest.raises(NotFound):
        await client.get(Namespace, ns, "")


async def test_invalid_object_reports_every_cause(client: Client, ns: str) -> None:
    raw = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "Bad_Name", "labels": {"ok": "-bad-"}},
        "spec": {"ports": [{"port": 70000}], "externalName": "x"},
    }
    with pytest.raises(Invalid) as caught:
        await client.create_raw(kinds.BY_KIND["Service"], ns, raw)
    fields = {cause.field for cause in caught.value.causes}
    assert "spec.externalName" in fields
    with pytest.raises(NotFound):
        await client.get(Service, "Bad_Name", ns)


async def test_create_sends_namespace_mismatch_as_bad_request(client: Client, ns: str) -> None:
    with pytest.raises(BadRequest, match="does not match"):
        await client.create_raw(
            kinds.BY_KIND["Pod"], ns, {**_raw_pod("a"), "metadata": {"name": "a", "namespace": "x"}}
        )


def _raw_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox:local"}]},
    }


async def test_oversized_object_is_rejected(client: Client, ns: str) -> None:
    raw = _raw_pod("big")
    raw["metadata"]["annotations"] = {"blob": "x" * (1024 * 1024 + 10)}
    with pytest.raises(TooLarge):
        await client.create_raw(kinds.BY_KIND["Pod"], ns, raw)
    with pytest.raises(NotFound):
        await client.get(Pod, "big", ns)


@pytest.mark.parametrize(
    "verb,body,reason",
    [
        ("create", b"\xff\xfe not json", "BadRequest"),
        ("create", b"[1, 2, 3]", "BadRequest"),
        ("create", b'{"kind": "Pod", "apiVersion": "v9"}', "BadRequest"),
        ("create", b'{"kind": "Deployment", "apiVersion": "apps/v1"}', "BadRequest"),
        ("get", b'{"nope": 1}', "BadRequest"),
        ("get", b"", "BadRequest"),
        ("delete", b'{"name": 5}', "BadRequest"),
        ("patch", b'{"name": "x", "patch": []}', "BadRequest"),
        (
            "update",
            b'{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "missing"}, "spec": {}}',
            "Invalid",
        ),
    ],
)
async def test_garbage_on_api_subjects_gets_clear_errors(
    nc: Any, api_servers: object, ns: str, verb: str, body: bytes, reason: str
) -> None:
    reply = await nc.request(subjects.api(verb, "pods", ns), body, timeout=5)
    assert reply.headers and ERROR_CODE_HEADER in reply.headers
    status = msgspec.json.decode(reply.data)
    assert status["kind"] == "Status" and status["reason"] == reason and status["message"]


async def test_unknown_resource_on_the_bus(nc: Any, api_servers: object) -> None:
    reply = await nc.request(subjects.api("get", "widgets", "default"), b'{"name":"x"}', timeout=5)
    assert msgspec.json.decode(reply.data)["reason"] == "NotFound"


async def test_api_keeps_serving_after_garbage(client: Client, nc: Any, ns: str) -> None:
    await asyncio.gather(
        *(nc.request(subjects.api("create", "pods", ns), b"{{{", timeout=5) for _ in range(20))
    )
    assert (await client.create(pod("after", ns))).metadata.name == "after"


async def test_both_replicas_serve(client: Client, ns: str, nc: Any) -> None:
    await asyncio.gather(*(client.create(pod(f"p{i}", ns)) for i in range(40)))
    reply = await nc.request("$SRV.STATS.steer-api", b"", timeout=2)
    assert reply  # at least one answers; count served requests across replicas below
    from bus.connection import discover

    replicas = [c for c in await discover(nc) if c.name == "steer-api"]
    assert len(replicas) == 2


async def test_lifecycle_events_are_recorded(client: Client, ns: str) -> None:
    await client.create(pod("a", ns))
    await client.delete(Pod, "a", ns)
    reasons: set[str] = set()
    async with asyncio.timeout(10):
        while not {"Created", "Deleted"} <= reasons:
            events = await client.list(Event, ns)
            reasons = {e.reason for e in events if e.involved_object.name == "a"}


async def test_endpoints_rewrites_record_no_updated_events(client: Client, ns: str) -> None:
    """Endpoints change with every readiness flip: Created, but no Updated each time."""
    ep = await client.create(Endpoints(metadata=ObjectMeta(name="web", namespace=ns)))
    for port in (8080, 8081):
        subset = EndpointSubset(addresses=[EndpointAddress(ip="127.0.0.1")], ports=[EndpointPort(port=port)])
        ep = await client.update(Endpoints(metadata=ep.metadata, subsets=[subset]))
    spec = ServiceSpec(ports=[ServicePort(port=80)], selector={"app": "web"})
    svc = await client.create(Service(metadata=ObjectMeta(name="sentinel", namespace=ns), spec=spec))
    svc.spec.ports = [ServicePort(port=81)]
    await client.update(svc)  # its Updated event comes after any the Endpoints would have had
    async with asyncio.timeout(10):
        while True:
            events = await client.list(Event, ns)
            if any(e.reason == "Updated" and e.involved_object.name == "sentinel" for e in events):
                break
    assert {e.reason for e in events if e.involved_object.kind == "Endpoints"} == {"Created"}


async def test_created_events_reach_the_stream(client: Client, nc: Any, ns: str) -> None:
    from bus import events as bus_events
    from bus.meta import ObjectReference

    involved = ObjectReference(kind="Pod", namespace=ns, name="web-1", api_version="v1")
    event = bus_events.make_event(
        involved, reason="BackOff", message="restarting", type="Warning", component="t"
    )
    stored = await client.create(event)
    assert stored.metadata.uid
    js = nc.jetstream()
    seen = [e async for e in bus_events.read(js, subject_filter=subjects.events_filter(ns, "Pod", "web-1"))]
    assert [(e.reason, e.type, e.message) for e in seen] == [("BackOff", "Warning", "restarting")]
