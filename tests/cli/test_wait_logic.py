"""The pure part of `steer wait`: reading --for, --timeout and the targets, and deciding from a
stream of watch events which objects are done."""

from __future__ import annotations

import pytest

from bus import kinds
from bus.errors import BadRequest
from bus.meta import ObjectMeta, Resource
from bus.resources import Node, Pod
from bus.resources.cluster import NodeCondition, NodeStatus
from bus.resources.pod import Container, PodCondition, PodSpec, PodStatus
from bus.store import WatchEvent
from cli.wait import Goal, Target, Tracker, has_conditions, parse_goal, parse_targets, parse_timeout


@pytest.mark.parametrize(
    ("text", "goal"),
    [
        ("delete", Goal()),
        ("condition=Ready", Goal("Ready", "True")),
        ("condition=Ready=false", Goal("Ready", "False")),
        ("condition=Available=TRUE", Goal("Available", "True")),
        ("condition=Progressing=unknown", Goal("Progressing", "Unknown")),
    ],
)
def test_goals(text: str, goal: Goal) -> None:
    assert parse_goal(text) == goal


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deleted", 'invalid --for "deleted"'),
        ("condition", 'invalid --for "condition"'),
        ("condition=", 'invalid --for "condition="'),
        ("jsonpath={.status}", "use --for=delete or --for=condition=NAME"),
        ("condition=Ready=yes", 'a condition is true, false or unknown, not "yes"'),
    ],
)
def test_bad_goals(text: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_goal(text)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("1m30s", 90.0), ("0", 0.0), ("-1s", None)])
def test_timeouts(text: str, seconds: float | None) -> None:
    assert parse_timeout(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10 minutes", "--1s", "5x"])
def test_bad_timeouts(text: str) -> None:
    with pytest.raises(BadRequest, match="--timeout: invalid duration"):
        parse_timeout(text)


def test_targets_by_kind_and_name() -> None:
    assert parse_targets(["pods", "a", "b"], selector="", everything=False) == [
        Target(kinds.BY_KIND["Pod"], ("a", "b"))
    ]
    mixed = parse_targets(["pod/a", "deploy/web", "po/b"], selector="", everything=False)
    assert [(t.info.kind, t.names) for t in mixed] == [("Pod", ("a", "b")), ("Deployment", ("web",))]
    chosen = parse_targets(["rs"], selector="app=x", everything=False)
    assert [(t.info.kind, t.names, t.selector) for t in chosen] == [("ReplicaSet", (), "app=x")]
    assert parse_targets(["nodes"], selector="", everything=True)[0].names == ()


@pytest.mark.parametrize(
    ("args", "selector", "everything", "message"),
    [
        ([], "", False, "specify what to wait for"),
        (["pods"], "", False, "specify names of pods to wait for, or -l SELECTOR, or --all"),
        (["pod/a", "b"], "", False, '"b" is not KIND/NAME'),
        (["pod/"], "", False, '"pod/" is not KIND/NAME'),
        (["pods", "a"], "app=x", False, "names cannot be given together with -l SELECTOR or --all"),
        (["pods", "a"], "", True, "names cannot be given together"),
        (["pods"], "app in (", False, "invalid label selector"),
        (["widgets/a"], "", False, 'doesn\'t have a resource type "widgets"'),
    ],
)
def test_bad_targets(args: list[str], selector: str, everything: bool, message: str) -> None:
    with pytest.raises(BadRequest, match=message.replace("(", r"\(")):
        parse_targets(args, selector=selector, everything=everything)


def test_which_kinds_have_conditions() -> None:
    with_conditions = {info.kind for info in kinds.KINDS if has_conditions(info)}
    expected = {"Pod", "Node", "ReplicaSet", "Deployment", "Service", "HorizontalPodAutoscaler"}
    assert with_conditions == expected


def pod(name: str, *, ready: str = "", labels: dict[str, str] | None = None, ns: str = "n") -> Pod:
    conditions = [PodCondition(type="Ready", status=ready)] if ready else []  # type: ignore[arg-type]
    return Pod(
        metadata=ObjectMeta(name=name, namespace=ns, labels=labels or {}),
        spec=PodSpec(containers=[Container(name="c", image="i")]),
        status=PodStatus(conditions=conditions),
    )


def added(obj: Resource) -> WatchEvent:
    return WatchEvent("ADDED", object=obj)


def modified(obj: Resource) -> WatchEvent:
    return WatchEvent("MODIFIED", object=obj)


def deleted(obj: Resource) -> WatchEvent:
    return WatchEvent("DELETED", object=obj)


SYNCED = WatchEvent("SYNCED")
PODS = kinds.BY_KIND["Pod"]


def run(tracker: Tracker, events: list[WatchEvent]) -> list[list[str]]:
    """The names each event completed."""
    return [[name for _, name in tracker.feed(event)] for event in events]


def test_a_condition_on_an_object_that_appears_later() -> None:
    tracker = Tracker(Target(PODS, ("web",)), Goal("Ready"), "n")
    done = run(
        tracker,
        [
            added(pod("other", ready="True")),
            SYNCED,
            added(pod("web")),
            modified(pod("web", ready="False")),
            modified(pod("web", ready="True", ns="elsewhere")),  # same name, other namespace
            modified(pod("web", ready="True")),
        ],
    )
    assert done == [[], [], [], [], [], ["web"]]
    assert tracker.finished and tracker.line(("n", "web")) == "pod/web condition met"


def test_met_already_in_the_listing_and_condition_false() -> None:
    ready = Tracker(Target(PODS, ("a", "b")), Goal("ready"), "n")  # the type is compared without case
    assert run(ready, [added(pod("a", ready="True")), added(pod("b")), SYNCED]) == [[], [], ["a"]]
    assert not ready.finished and ready.missed() == ["timed out waiting for the condition on pods/b"]
    not_ready = Tracker(Target(PODS, ("b",)), Goal("Ready", "False"), "n")
    assert run(not_ready, [added(pod("b")), SYNCED, modified(pod("b", ready="False"))]) == [[], [], ["b"]]


def test_a_deleted_object_is_waited_for_again() -> None:
    tracker = Tracker(Target(PODS, ("web",)), Goal("Ready"), "n")
    events = [added(pod("web")), SYNCED, deleted(pod("web")), added(pod("web", ready="True"))]
    assert run(tracker, events) == [[], [], [], ["web"]]


def test_delete_of_absent_and_present_objects() -> None:
    tracker = Tracker(Target(PODS, ("gone", "here", "later")), Goal(), "n")
    events = [added(pod("here")), SYNCED, added(pod("later")), deleted(pod("here")), deleted(pod("later"))]
    assert run(tracker, events) == [[], ["gone", "later"], [], ["here"], []]
    assert tracker.finished and tracker.line(("n", "here")) == "pod/here deleted"


def test_a_selector_fixes_its_objects_when_the_listing_ends() -> None:
    tracker = Tracker(Target(PODS, selector="app=x"), Goal("Ready"), "*")
    events = [
        added(pod("a", labels={"app": "x"}, ns="one")),
        added(pod("b", labels={"app": "y"}, ns="one")),
        added(pod("a", labels={"app": "x"}, ns="two", ready="True")),
        SYNCED,
        added(pod("c", labels={"app": "x"}, ready="True")),  # came later: not waited for
        modified(pod("a", labels={"app": "z"}, ns="one", ready="True")),  # chosen: followed by name
    ]
    assert run(tracker, events) == [[], [], [], ["a"], [], ["a"]]
    assert tracker.finished


def test_a_selector_that_matches_nothing() -> None:
    with pytest.raises(BadRequest, match="no matching resources found"):
        Tracker(Target(PODS, selector="app=x"), Goal("Ready"), "n").feed(SYNCED)
    deleting = Tracker(Target(PODS, selector="app=x"), Goal(), "n")
    assert deleting.feed(SYNCED) == [] and deleting.finished


def test_cluster_scoped_objects_and_a_listing_that_never_ended() -> None:
    node = Node(
        metadata=ObjectMeta(name="n1"),
        status=NodeStatus(conditions=[NodeCondition(type="Ready", status="True")]),
    )
    tracker = Tracker(Target(kinds.BY_KIND["Node"], ("n1",)), Goal("Ready"), "default")
    assert run(tracker, [added(node), SYNCED]) == [[], ["n1"]]
    assert tracker.line(("", "n1")) == "node/n1 condition met"
    slow = Tracker(Target(PODS, selector="app=x"), Goal("Ready"), "n")
    assert slow.missed() == ["timed out waiting for the condition on pods"]
