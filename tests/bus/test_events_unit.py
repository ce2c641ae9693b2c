"""Building Events and choosing the subject each is published on (no server needed)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from bus import events, subjects
from bus.meta import LabelSelector, ObjectMeta, ObjectReference, Resource
from bus.resources import Deployment, Event, Namespace, Node, Pod
from bus.resources.apps import DeploymentSpec
from bus.resources.pod import PodSpec, PodTemplateSpec

STAMP = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "now", lambda: STAMP)


def pod(name: str = "web-1", namespace: str = "prod") -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=namespace, uid="u-1", resource_version="7"),
        spec=PodSpec(containers=[]),
    )


def deployment() -> Deployment:
    spec = DeploymentSpec(selector=LabelSelector(), template=PodTemplateSpec())
    return Deployment(metadata=ObjectMeta(name="web", namespace="shop"), spec=spec)


def test_reference_copies_identity() -> None:
    assert events.reference(pod()) == ObjectReference(
        api_version="v1", kind="Pod", namespace="prod", name="web-1", uid="u-1", resource_version="7"
    )
    assert events.reference(deployment()).api_version == "apps/v1"


@pytest.mark.parametrize(
    ("involved", "namespace"),
    [
        (ObjectReference(kind="Pod", namespace="prod", name="web-1"), "prod"),
        (ObjectReference(kind="Pod", name="web-1"), "default"),
        (ObjectReference(kind="Node", name="n1"), "default"),
        (ObjectReference(kind="Deployment", namespace="shop", name="web.v2"), "shop"),
    ],
)
def test_make_event_names_and_namespace(involved: ObjectReference, namespace: str) -> None:
    event = events.make_event(involved, reason="Scheduled", message="assigned", component="steer-scheduler")
    assert re.fullmatch(rf"{re.escape(involved.name)}\.[0-9a-f]{{16}}", event.metadata.name)
    assert event.metadata.namespace == namespace
    assert event.involved_object == involved


def test_make_event_names_are_unique() -> None:
    ref = ObjectReference(kind="Pod", namespace="prod", name="web-1")
    names = {events.make_event(ref, reason="R", message="m", component="c").metadata.name for _ in range(50)}
    assert len(names) == 50


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Warning", "Warning"),
        ("Normal", "Normal"),
        ("warning", "Normal"),
        ("Error", "Normal"),
        ("", "Normal"),
    ],
)
def test_make_event_type(given: str, expected: str) -> None:
    ref = ObjectReference(kind="Pod", namespace="prod", name="p")
    event = events.make_event(ref, reason="R", message="m", type=given, component="c")
    assert event.type == expected


def test_make_event_fields() -> None:
    ref = ObjectReference(kind="Pod", namespace="prod", name="p")
    event = events.make_event(
        ref, reason="BackOff", message="restarting", type="Warning", component="steer-agent", host="n1"
    )
    assert (event.reason, event.message, event.count) == ("BackOff", "restarting", 1)
    assert (event.source.component, event.source.host) == ("steer-agent", "n1")
    assert (event.reporting_component, event.reporting_instance) == ("steer-agent", "n1")
    assert event.first_timestamp == event.last_timestamp == STAMP
    assert event.kind == "Event" and event.api_version == "v1"


def event_about(obj: Resource) -> Event:
    return events.make_event(events.reference(obj), reason="Created", message="m", component="steer-api")


@pytest.mark.parametrize(
    ("obj", "subject"),
    [
        (pod(), "steer.events.prod.Pod.web-1"),
        (pod("db-0", "data"), "steer.events.data.Pod.db-0"),
        (deployment(), "steer.events.shop.Deployment.web"),
    ],
)
def test_subject_of_namespaced_objects(obj: Resource, subject: str) -> None:
    event = event_about(obj)
    assert events.subject_of(event) == subject
    kind, name = obj.kind, obj.metadata.name
    assert events.subject_of(event) == subjects.events_filter(obj.metadata.namespace, kind, name)


@pytest.mark.parametrize(
    ("involved", "event_namespace", "subject"),
    [
        # a kind the registry does not know keeps the involved object's namespace
        (ObjectReference(kind="Widget", namespace="w", name="x"), "other", "steer.events.w.Widget.x"),
        # a namespaced object without a namespace falls back to the event's own
        (ObjectReference(kind="Pod", name="p"), "prod", "steer.events.prod.Pod.p"),
        # no kind at all
        (ObjectReference(namespace="prod", name="p"), "prod", "steer.events.prod.Unknown.p"),
    ],
)
def test_subject_of_edge_cases(involved: ObjectReference, event_namespace: str, subject: str) -> None:
    event = Event(metadata=ObjectMeta(name="e", namespace=event_namespace), involved_object=involved)
    assert events.subject_of(event) == subject


@pytest.mark.parametrize(
    "obj",
    [Node(metadata=ObjectMeta(name="n1")), Namespace(metadata=ObjectMeta(name="prod"))],
    ids=["node", "namespace"],
)
def test_subject_of_cluster_scoped_objects_uses_underscore(obj: Resource) -> None:
    event = event_about(obj)
    assert event.metadata.namespace == "default"  # Kubernetes keeps Node events in "default"
    expected = subjects.events(None, obj.kind, obj.metadata.name)
    assert expected == f"steer.events._.{obj.kind}.{obj.metadata.name}"
    # the filter `steer describe node n1` reads with must see the event
    assert events.subject_of(event) == subjects.events_filter(None, obj.kind, obj.metadata.name)
