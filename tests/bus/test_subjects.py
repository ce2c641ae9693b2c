"""Subjects, buckets and keys: every builder and its parser agree, cluster scope is `_`."""

from __future__ import annotations

import pytest

from bus import subjects
from bus.errors import BadRequest


@pytest.mark.parametrize(
    ("verb", "plural", "namespace", "subject", "parsed_namespace"),
    [
        ("get", "pods", "default", "steer.api.get.pods.default", "default"),
        ("create", "deployments", "prod", "steer.api.create.deployments.prod", "prod"),
        ("list", "pods", "*", "steer.api.list.pods._all", "*"),
        ("delete", "nodes", None, "steer.api.delete.nodes._", ""),
        ("status", "namespaces", "", "steer.api.status.namespaces._", ""),
        ("patch", "horizontalpodautoscalers", "a-b", "steer.api.patch.horizontalpodautoscalers.a-b", "a-b"),
    ],
)
def test_api_round_trip(
    verb: subjects.ApiVerb, plural: str, namespace: str | None, subject: str, parsed_namespace: str
) -> None:
    assert subjects.api(verb, plural, namespace) == subject
    assert subjects.parse_api(subject) == (verb, plural, parsed_namespace)


@pytest.mark.parametrize("verb", subjects.API_VERBS)
def test_api_listen_covers_every_subject_of_a_verb(verb: subjects.ApiVerb) -> None:
    assert subjects.api_listen(verb) == f"steer.api.{verb}.*.*"
    assert len(subjects.api(verb, "pods", None).split(".")) == len(subjects.api_listen(verb).split("."))


@pytest.mark.parametrize(
    ("node", "verb", "plural", "namespace", "subject", "parsed_namespace"),
    [
        ("n1", "status", "pods", "default", "steer.node.n1.status.pods.default", "default"),
        ("worker-2", "get", "nodes", None, "steer.node.worker-2.get.nodes._", ""),
        ("n1", "create", "events", "kube", "steer.node.n1.create.events.kube", "kube"),
        ("n1", "update", "leases", "", "steer.node.n1.update.leases._", ""),
    ],
)
def test_node_round_trip(
    node: str,
    verb: subjects.ApiVerb,
    plural: str,
    namespace: str | None,
    subject: str,
    parsed_namespace: str,
) -> None:
    assert subjects.node(node, verb, plural, namespace) == subject
    assert subjects.parse_node(subject) == (node, verb, plural, parsed_namespace)
    assert len(subject.split(".")) == len(subjects.node_listen().split("."))


@pytest.mark.parametrize(
    ("namespace", "kind", "name", "subject"),
    [
        ("default", "Pod", "web-1", "steer.events.default.Pod.web-1"),
        (None, "Node", "n1", "steer.events._.Node.n1"),
        ("", "Namespace", "prod", "steer.events._.Namespace.prod"),
    ],
)
def test_events(namespace: str | None, kind: str, name: str, subject: str) -> None:
    assert subjects.events(namespace, kind, name) == subject


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "steer.events.*.*.*"),
        (("default",), "steer.events.default.*.*"),
        ((None,), "steer.events._.*.*"),
        (("",), "steer.events._.*.*"),
        (("prod", "Pod"), "steer.events.prod.Pod.*"),
        (("prod", "Pod", "web-1"), "steer.events.prod.Pod.web-1"),
        ((None, "Node", "n1"), "steer.events._.Node.n1"),
        (("*", "Deployment"), "steer.events.*.Deployment.*"),
    ],
)
def test_events_filter(args: tuple[str | None, ...], expected: str) -> None:
    assert subjects.events_filter(*args) == expected


def test_events_filter_for_one_object_matches_its_subject() -> None:
    assert subjects.events_filter("default", "Pod", "web") == subjects.events("default", "Pod", "web")
    assert subjects.events_filter(None, "Node", "n1") == subjects.events(None, "Node", "n1")
    assert subjects.events_all() == "steer.events.>"


@pytest.mark.parametrize(
    ("namespace", "name", "key", "split"),
    [
        ("default", "web", "default.web", ("default", "web")),
        (None, "n1", "_.n1", ("", "n1")),
        ("", "prod", "_.prod", ("", "prod")),
        (
            "default",
            "web-1.17a2b3c4d5e6f708",
            "default.web-1.17a2b3c4d5e6f708",
            ("default", "web-1.17a2b3c4d5e6f708"),
        ),
    ],
)
def test_key_round_trip(namespace: str | None, name: str, key: str, split: tuple[str, str]) -> None:
    assert subjects.key(namespace, name) == key
    assert subjects.split_key(key) == split


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [("default", "default.>"), (None, "_.>"), ("", "_.>"), ("*", ">")],
)
def test_key_filter(namespace: str | None, expected: str) -> None:
    assert subjects.key_filter(namespace) == expected


@pytest.mark.parametrize(
    ("plural", "bucket"),
    [("pods", "steer-pods"), ("horizontalpodautoscalers", "steer-horizontalpodautoscalers")],
)
def test_bucket(plural: str, bucket: str) -> None:
    assert subjects.bucket(plural) == bucket


@pytest.mark.parametrize(
    ("bucket", "key", "subject"),
    [
        ("steer-pods", "default.web", "$KV.steer-pods.default.web"),
        ("steer-nodes", "_.n1", "$KV.steer-nodes._.n1"),
        ("steer-pods", ">", "$KV.steer-pods.>"),
    ],
)
def test_kv_subject(bucket: str, key: str, subject: str) -> None:
    assert subjects.kv_subject(bucket, key) == subject


@pytest.mark.parametrize(("component", "name"), [("api", "steer-api"), ("scheduler", "steer-scheduler")])
def test_service_name(component: str, name: str) -> None:
    assert subjects.service_name(component) == name


@pytest.mark.parametrize(("namespace", "scope"), [("x", "x"), ("", "_"), (None, "_"), ("*", "_all")])
def test_scope_and_unscope(namespace: str | None, scope: str) -> None:
    assert subjects.scope(namespace) == scope
    assert subjects.unscope(scope) == (namespace or "")


@pytest.mark.parametrize("verb", subjects.API_VERBS)
def test_published_api_subjects_have_no_wildcards(verb: subjects.ApiVerb) -> None:
    for namespace in ("default", "", None, "*"):
        tokens = subjects.api(verb, "pods", namespace).split(".")
        assert "*" not in tokens and ">" not in tokens


LONG = "a" * 5000


@pytest.mark.parametrize(
    "build",
    [
        lambda: subjects.key("default", LONG),
        lambda: subjects.key(LONG, "web"),
        lambda: subjects.key("default", "web 1"),
        lambda: subjects.key("default", "web\r\nPUB x 1"),
        lambda: subjects.key("default", "a..b"),
        lambda: subjects.key("default", ".web"),
        lambda: subjects.key("default", "*"),
        lambda: subjects.key("default", ""),
        lambda: subjects.api("get", "pods", LONG),
        lambda: subjects.api("get", "pods", "a.b"),
        lambda: subjects.api("get", "pods", ">"),
        lambda: subjects.node(LONG, "get", "pods", "default"),
        lambda: subjects.node("n1.x", "get", "pods", "default"),
        lambda: subjects.node_feed(LONG),
        lambda: subjects.node_feed("n 1"),
        lambda: subjects.node_stream("n1", "logs.x", "default"),
        lambda: subjects.events("default", "Pod", LONG),
        lambda: subjects.events("default", "Pod", "web.1"),
        lambda: subjects.events("default", "Po d", "web"),
        lambda: subjects.events_filter("default", "Pod", LONG),
        lambda: subjects.metrics_node(LONG),
        lambda: subjects.metrics_proxy("n\t1"),
        lambda: subjects.cluster_feed("services.>"),
        lambda: subjects.bucket("pods pods"),
    ],
)
def test_no_builder_emits_a_malformed_or_over_long_subject(build: object) -> None:
    """The defence behind every validation: whatever a caller passes, nothing malformed is built."""
    with pytest.raises(BadRequest):
        build()  # type: ignore[operator]


def test_token_errors_name_the_token_without_echoing_all_of_it() -> None:
    with pytest.raises(BadRequest) as caught:
        subjects.key("default", LONG)
    assert "name" in caught.value.message and "5000 characters" in caught.value.message
    assert len(caught.value.message) < 200


def test_longest_legitimate_names_fit() -> None:
    namespace, name = "n" * 63, "e" * 120 + "." + "f" * 132
    key = subjects.key(namespace, name)
    assert subjects.split_key(key) == (namespace, name)
    assert len(subjects.kv_subject(subjects.bucket("horizontalpodautoscalers"), key)) < 512
    assert subjects.events(namespace, "HorizontalPodAutoscaler", "w" * 253)
    assert subjects.metrics_node("") == "steer.metrics.node."  # a prefix, for matching
