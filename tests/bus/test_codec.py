"""Reading manifests (YAML, JSON, Lists) and writing resources as YAML and JSON."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
import yaml

from bus.codec import decode, encode, load_documents, to_builtins, to_json, to_yaml
from bus.errors import BadRequest
from bus.meta import ObjectMeta
from bus.resources import Deployment, Pod
from bus.resources.pod import (
    Container,
    ContainerState,
    ContainerStateWaiting,
    ContainerStatus,
    PodSpec,
    PodStatus,
)

POD_A = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}}
POD_B = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b"}}
SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("   \n", []),
        ("---\n", []),
        ("---\n---\n...\n", []),
        ("# only a comment\n", []),
        ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n", [POD_A]),
        ("kind: Pod\n---\nkind: Service\n", [{"kind": "Pod"}, {"kind": "Service"}]),
        ("---\nkind: Pod\n---\n---\nkind: Service\n---\n", [{"kind": "Pod"}, {"kind": "Service"}]),
        (json.dumps(POD_A), [POD_A]),
        (json.dumps(POD_A, indent=2), [POD_A]),
        ('{\n\t"kind": "Pod"\n}', [{"kind": "Pod"}]),
        (json.dumps({"kind": "List", "items": [POD_A, SVC]}), [POD_A, SVC]),
        ("kind: List\nitems: []\n", []),
        ("kind: List\n", []),
        ("kind: List\nitems:\n", []),
        (yaml.safe_dump({"kind": "PodList", "items": [POD_A, POD_B]}), [POD_A, POD_B]),
        (
            yaml.safe_dump({"kind": "List", "items": [POD_A]}) + "---\n" + yaml.safe_dump(POD_B),
            [POD_A, POD_B],
        ),
        # a kind merely ending in "List" without items is an ordinary object
        ("kind: PodList\nmetadata: {}\n", [{"kind": "PodList", "metadata": {}}]),
    ],
)
def test_load_documents(text: str, expected: list[dict[str, Any]]) -> None:
    assert load_documents(text) == expected


@pytest.mark.parametrize(
    ("text", "document", "type_name"),
    [
        ("- a\n- b\n", 1, "list"),
        ("just a string\n", 1, "str"),
        ("42\n", 1, "int"),
        ("kind: Pod\n---\n- x\n", 2, "list"),
        ("---\n---\ntrue\n", 2, "bool"),
        ("kind: Pod\n---\nkind: Service\n---\n3.5\n", 3, "float"),
    ],
)
def test_non_mapping_document_is_rejected_by_number(text: str, document: int, type_name: str) -> None:
    with pytest.raises(BadRequest) as caught:
        load_documents(text, source="app.yaml")
    assert caught.value.message == f"app.yaml: document {document} is a {type_name}, not an object"


@pytest.mark.parametrize(
    "text",
    [
        "kind: List\nitems: {a: 1}\n",
        "kind: List\nitems: [1, 2]\n",
        "kind: PodList\nitems: [{kind: Pod}, oops]\n",
    ],
)
def test_list_items_must_be_objects(text: str) -> None:
    with pytest.raises(BadRequest, match=r"^m\.yaml: document 1: items must be a list of objects$"):
        load_documents(text, source="m.yaml")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: [1\n", 2),
        ("a: b\n  c: d\n", 2),
        ("kind: Pod\nmetadata:\n  name: a\n   bad: [\n", 4),
        ("kind: Pod\n---\nkind: Service\nspec: {ports: [}\n", 4),
        ("key: 'unterminated\n", 2),
        ('{"kind": "Pod",\n "metadata": {"name": "a"]\n}\n', 2),
    ],
)
def test_malformed_yaml_names_the_line(text: str, line: int) -> None:
    with pytest.raises(BadRequest) as caught:
        load_documents(text, source="bad.yaml")
    message = caught.value.message
    assert message.startswith("bad.yaml: malformed YAML")
    assert re.search(rf"\(line {line}, column \d+\): \S", message), message
    assert caught.value.code == 400


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("replicas: 1" + "0" * 5000 + "\n", "Exceeds the limit (4300 digits) for integer string conversion"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "exceeded maximum nesting depth"),
    ],
)
def test_yaml_python_cannot_hold_is_malformed_not_a_crash(text: str, problem: str) -> None:
    """Found by fuzzing: a 5,001-digit number made `steer apply` fail with an internal error."""
    with pytest.raises(BadRequest) as caught:
        load_documents(text, source="big.yaml")
    assert caught.value.message.startswith("big.yaml: malformed YAML") and problem in caught.value.message


def test_default_source_is_stdin() -> None:
    with pytest.raises(BadRequest, match=r"^<stdin>: document 1 is a list"):
        load_documents("[1]")


def make_pod() -> Pod:
    return Pod(
        metadata=ObjectMeta(
            name="web-1",
            namespace="prod",
            uid="1234",
            labels={"app": "web"},
            creation_timestamp=datetime(2024, 5, 1, 12, 30, 45, 123000, tzinfo=UTC),
        ),
        spec=PodSpec(containers=[Container(name="app", image="nginx:1.25")], node_name="n1"),
        status=PodStatus(
            phase="Running",
            pod_ip="10.0.0.7",
            container_statuses=[
                ContainerStatus(
                    name="app",
                    restart_count=3,
                    container_id="docker://abc",
                    state=ContainerState(waiting=ContainerStateWaiting(reason="CrashLoopBackOff")),
                )
            ],
        ),
    )


@pytest.mark.parametrize(
    "obj",
    [
        make_pod(),
        Pod(spec=PodSpec(containers=[])),
        msgspec.convert(
            {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"selector": {}, "template": {}}},
            type=Deployment,
        ),
    ],
    ids=["pod", "bare-pod", "deployment"],
)
def test_to_builtins_puts_api_version_kind_metadata_first(obj: Any) -> None:
    value = to_builtins(obj)
    assert list(value)[:3] == ["apiVersion", "kind", "metadata"]
    assert value["apiVersion"] == obj.api_version
    assert value["kind"] == obj.kind


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"kind": "X", "z": 1, "apiVersion": "v1"}, ["apiVersion", "kind", "z"]),
        ({"spec": 1, "metadata": {}, "kind": "X"}, ["kind", "metadata", "spec"]),
        ({"b": 1, "a": 2}, ["b", "a"]),
    ],
)
def test_to_builtins_orders_plain_dicts(value: dict[str, Any], expected: list[str]) -> None:
    assert list(to_builtins(value)) == expected


@pytest.mark.parametrize("value", [[1, 2], "text", 3, None])
def test_to_builtins_leaves_non_mappings(value: Any) -> None:
    assert to_builtins(value) == value


def test_yaml_round_trip_of_a_pod() -> None:
    pod = make_pod()
    text = to_yaml(pod)
    assert text.splitlines()[:3] == ["apiVersion: v1", "kind: Pod", "metadata:"]
    assert "containerID: docker://abc" in text
    [doc] = load_documents(text)
    assert doc == to_builtins(pod)
    assert msgspec.convert(doc, type=Pod) == pod


def test_json_round_trip_of_a_pod() -> None:
    pod = make_pod()
    text = to_json(pod)
    assert list(json.loads(text))[:3] == ["apiVersion", "kind", "metadata"]
    assert text.startswith('{\n  "apiVersion": "v1",\n  "kind": "Pod"')
    assert decode(text.encode(), Pod) == pod
    assert load_documents(text) == [to_builtins(pod)]


def test_wire_round_trip_of_a_pod() -> None:
    pod = make_pod()
    assert decode(encode(pod), Pod) == pod


def test_a_json_manifest_is_read_as_json() -> None:
    """Found by fuzzing: JSON with an emoji escaped as a surrogate pair (as json.dumps writes it)
    is valid JSON that YAML refuses; kubectl reads such a file as JSON, and so do we."""
    text = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"annotations": {"note": "🙂"}}})
    assert "\\ud83d" in text
    assert load_documents(text)[0]["metadata"]["annotations"]["note"] == "🙂"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "kind: Pod\nmetadata: {name: a, name: b}\n",
            'f.yaml: malformed YAML (line 2, column 21): mapping key "name" is given twice',
        ),
        ("a: 1\nb: 2\na: 3\n", 'f.yaml: malformed YAML (line 3, column 1): mapping key "a" is given twice'),
        (
            '{"kind": "Pod", "kind": "Service"}',
            'f.yaml: malformed JSON: key "kind" is given twice in one object',
        ),
    ],
    ids=["yaml flow mapping", "yaml block mapping", "json"],
)
def test_a_key_given_twice_is_an_error_as_kubectl_has_it(text: str, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        load_documents(text, source="f.yaml")
    assert caught.value.message == message


def test_merge_keys_are_not_duplicates() -> None:
    assert load_documents("a: &x {b: 1}\nc:\n  <<: *x\n  d: 2\n") == [{"a": {"b": 1}, "c": {"b": 1, "d": 2}}]
