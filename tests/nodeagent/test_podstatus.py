from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from bus.resources.pod import Container, PodCondition, PodPhase, PodSpec, PodStatus
from nodeagent.podstatus import (
    ContainerObservation,
    Running,
    Terminated,
    Waiting,
    changed,
    container_status,
    pod_phase,
    pod_status,
    terminated_reason,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
T2 = T0 + timedelta(minutes=2)

Obs = ContainerObservation


def spec(*names: str, policy: str = "Always", node: str = "n1") -> PodSpec:
    return PodSpec(
        containers=[Container(name=n, image=f"{n}:1") for n in names],
        restart_policy=policy,  # type: ignore[arg-type]
        node_name=node,
    )


RUNNING = Obs(Running(T0), ready=True)
RUNNING_UNREADY = Obs(Running(T0))
EXIT_0 = Obs(Terminated(0))
EXIT_1 = Obs(Terminated(1))
CREATING = Obs(Waiting())
BACKOFF_AFTER_0 = Obs(Waiting("CrashLoopBackOff"), restart_count=1, last_terminated=Terminated(0))
BACKOFF_AFTER_1 = Obs(Waiting("CrashLoopBackOff"), restart_count=1, last_terminated=Terminated(1))


def phase(observed: dict[str, Obs], policy: str, *, terminal: bool = False) -> PodPhase:
    s = spec(*observed, policy=policy)
    statuses = [container_status(c, observed[c.name], terminal=terminal) for c in s.containers]
    return pod_phase(s, statuses, terminal=terminal)


@pytest.mark.parametrize(
    ("observed", "always", "on_failure", "never"),
    [
        ({"a": CREATING}, "Pending", "Pending", "Pending"),
        ({"a": RUNNING, "b": CREATING}, "Pending", "Pending", "Pending"),
        ({"a": RUNNING}, "Running", "Running", "Running"),
        ({"a": RUNNING, "b": EXIT_0}, "Running", "Running", "Running"),
        ({"a": RUNNING, "b": EXIT_1}, "Running", "Running", "Running"),
        ({"a": EXIT_0}, "Running", "Succeeded", "Succeeded"),
        ({"a": EXIT_0, "b": EXIT_0}, "Running", "Succeeded", "Succeeded"),
        ({"a": EXIT_1}, "Running", "Running", "Failed"),
        ({"a": EXIT_0, "b": EXIT_1}, "Running", "Running", "Failed"),
        # waiting to be restarted counts as stopped, never as succeeded
        ({"a": BACKOFF_AFTER_1}, "Running", "Running", "Failed"),
        ({"a": BACKOFF_AFTER_0}, "Running", "Running", "Failed"),
        ({"a": RUNNING, "b": BACKOFF_AFTER_1}, "Running", "Running", "Running"),
    ],
)
def test_phase_per_restart_policy(observed: dict[str, Obs], always: str, on_failure: str, never: str) -> None:
    assert [phase(observed, p) for p in ("Always", "OnFailure", "Never")] == [always, on_failure, never]


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        ({"a": EXIT_0}, "Succeeded"),
        ({"a": EXIT_1}, "Failed"),
        ({"a": EXIT_0, "b": BACKOFF_AFTER_0}, "Failed"),  # never restarted: status unknown, 137
        ({"a": CREATING}, "Failed"),
    ],
)
def test_phase_of_a_terminal_pod(observed: dict[str, Obs], expected: str) -> None:
    assert phase(observed, "Always", terminal=True) == expected


def test_missing_container_status_keeps_pending() -> None:
    s = spec("a", "b")
    statuses = [container_status(s.containers[0], RUNNING, terminal=False)]
    assert pod_phase(s, statuses) == "Pending"


@pytest.mark.parametrize(
    ("exit_code", "oom", "reason"),
    [(0, False, "Completed"), (1, False, "Error"), (137, False, "Error"), (137, True, "OOMKilled")],
)
def test_terminated_reason(exit_code: int, oom: bool, reason: str) -> None:
    assert terminated_reason(exit_code, oom_killed=oom) == reason
    status = container_status(
        Container(name="a", image="i"), Obs(Terminated(exit_code, oom_killed=oom)), terminal=False
    )
    assert status.state.terminated is not None and status.state.terminated.reason == reason


@pytest.mark.parametrize(
    ("seen", "ready", "started", "waiting_reason"),
    [
        (None, False, False, "ContainerCreating"),
        (Obs(Waiting("ErrImagePull", "pull failed")), False, False, "ErrImagePull"),
        (Obs(Running(T0), ready=True), True, True, None),
        (Obs(Running(T0), ready=False, started=False), False, False, None),
        (Obs(Running(T0), ready=True, started=True), True, True, None),
        (Obs(Terminated(0), ready=True, started=True), False, False, None),
    ],
)
def test_container_status(seen: Obs | None, ready: bool, started: bool, waiting_reason: str | None) -> None:
    status = container_status(Container(name="a", image="a:1"), seen, terminal=False)
    assert (status.name, status.image, status.ready, status.started) == ("a", "a:1", ready, started)
    assert (status.state.waiting.reason if status.state.waiting else None) == waiting_reason


def test_container_status_fields() -> None:
    seen = Obs(
        Running(T1),
        ready=True,
        restart_count=2,
        last_terminated=Terminated(1, started_at=T0, finished_at=T1, container_id="docker://old"),
        image="docker.io/library/a:1",
        image_id="sha256:abc",
        container_id="docker://new",
    )
    status = container_status(Container(name="a", image="a:1"), seen, terminal=False)
    assert status.state.running is not None and status.state.running.started_at == T1
    assert status.last_state.terminated is not None
    assert (status.last_state.terminated.reason, status.last_state.terminated.container_id) == (
        "Error",
        "docker://old",
    )
    assert (status.restart_count, status.image, status.image_id, status.container_id) == (
        2,
        "docker.io/library/a:1",
        "sha256:abc",
        "docker://new",
    )


def test_terminal_pod_marks_unstarted_containers_unknown() -> None:
    status = container_status(Container(name="a", image="a:1"), CREATING, terminal=True)
    terminated = status.state.terminated
    assert terminated is not None and status.state.waiting is None
    assert (terminated.exit_code, terminated.reason) == (137, "ContainerStatusUnknown")
    assert terminated.message == "The container could not be located when the pod was terminated"


def conditions_of(status: PodStatus) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in status.conditions}


NOT_READY = ("False", "ContainersNotReady", "containers with unready status: [b]")


@pytest.mark.parametrize(
    ("observed", "policy", "terminating", "ready", "containers_ready", "initialized"),
    [
        ({"a": RUNNING}, "Always", False, ("True", "", ""), ("True", "", ""), ("True", "", "")),
        ({"a": RUNNING, "b": RUNNING_UNREADY}, "Always", False, NOT_READY, NOT_READY, ("True", "", "")),
        ({"a": RUNNING, "b": CREATING}, "Always", False, NOT_READY, NOT_READY, ("True", "", "")),
        (
            {"a": RUNNING_UNREADY, "b": RUNNING_UNREADY},
            "Always",
            False,
            ("False", "ContainersNotReady", "containers with unready status: [a b]"),
            ("False", "ContainersNotReady", "containers with unready status: [a b]"),
            ("True", "", ""),
        ),
        (
            {"a": RUNNING},
            "Always",
            True,
            ("False", "Terminating", "the pod is being deleted"),
            ("True", "", ""),
            ("True", "", ""),
        ),
        (
            {"a": EXIT_0},
            "Never",
            False,
            ("False", "PodCompleted", ""),
            ("False", "PodCompleted", ""),
            ("True", "PodCompleted", ""),
        ),
        (
            {"a": EXIT_1},
            "Never",
            False,
            ("False", "PodFailed", ""),
            ("False", "PodFailed", ""),
            ("True", "", ""),
        ),
    ],
)
def test_conditions(
    observed: dict[str, Obs],
    policy: str,
    terminating: bool,
    ready: tuple[str, str, str],
    containers_ready: tuple[str, str, str],
    initialized: tuple[str, str, str],
) -> None:
    status = pod_status(
        spec(*observed, policy=policy), observed, previous=PodStatus(), now=T0, terminating=terminating
    )
    assert conditions_of(status) == {
        "Initialized": initialized,
        "Ready": ready,
        "ContainersReady": containers_ready,
        "PodScheduled": ("True", "", ""),
    }
    assert [c.type for c in status.conditions] == ["Initialized", "Ready", "ContainersReady", "PodScheduled"]


def test_unbound_pod_has_no_pod_scheduled_of_its_own() -> None:
    status = pod_status(spec("a", node=""), {}, previous=PodStatus(), now=T0)
    assert "PodScheduled" not in conditions_of(status)


def times_of(status: PodStatus) -> dict[str, datetime | None]:
    return {c.type: c.last_transition_time for c in status.conditions}


@pytest.mark.parametrize(
    ("first", "second", "moved"),
    [
        # nothing changed: every time stays
        ({"a": RUNNING}, {"a": RUNNING}, set()),
        # readiness flips: Ready and ContainersReady move, the others stay
        ({"a": RUNNING_UNREADY}, {"a": RUNNING}, {"Ready", "ContainersReady"}),
        ({"a": RUNNING}, {"a": RUNNING_UNREADY}, {"Ready", "ContainersReady"}),
        # a message changes but the status does not: the time stays
        ({"a": RUNNING_UNREADY, "b": RUNNING}, {"a": RUNNING, "b": RUNNING_UNREADY}, set()),
    ],
)
def test_transition_times(first: dict[str, Obs], second: dict[str, Obs], moved: set[str]) -> None:
    s = spec(*first)
    before = pod_status(s, first, previous=PodStatus(), now=T0)
    after = pod_status(s, second, previous=before, now=T1)
    expected = {t: (T1 if t in moved else T0) for t in times_of(before)}
    assert times_of(after) == expected


def test_transition_time_survives_the_wire() -> None:
    s = spec("a")
    before = pod_status(s, {"a": RUNNING}, previous=PodStatus(), now=T0)
    stored = msgspec.json.decode(msgspec.json.encode(before), type=PodStatus)
    again = pod_status(s, {"a": RUNNING}, previous=stored, now=T1)
    assert not changed(stored, again)


def test_conditions_of_others_are_kept() -> None:
    theirs = PodCondition(type="DisruptionTarget", status="True", reason="EvictionByEvictionAPI")
    scheduled = PodCondition(type="PodScheduled", status="True", last_transition_time=T0 - timedelta(hours=1))
    previous = PodStatus(conditions=[scheduled, theirs])
    status = pod_status(spec("a"), {"a": RUNNING}, previous=previous, now=T0)
    assert status.conditions[-1] == theirs
    assert times_of(status)["PodScheduled"] == T0 - timedelta(hours=1)


@pytest.mark.parametrize(
    ("previous_phase", "observed", "policy", "expected"),
    [
        ("Pending", {"a": RUNNING}, "Always", "Running"),
        ("Running", {"a": EXIT_1}, "Never", "Failed"),
        # terminal phases are never left, whatever is observed later
        ("Succeeded", {"a": CREATING}, "Never", "Succeeded"),
        ("Failed", {"a": RUNNING}, "Never", "Failed"),
        ("Failed", {"a": EXIT_0}, "Never", "Failed"),
    ],
)
def test_terminal_phase_is_sticky(
    previous_phase: str, observed: dict[str, Obs], policy: str, expected: str
) -> None:
    previous = PodStatus(phase=previous_phase)  # type: ignore[arg-type]
    assert pod_status(spec("a", policy=policy), observed, previous=previous, now=T0).phase == expected


@pytest.mark.parametrize(
    ("previous", "reason", "observed", "expected"),
    [
        (PodStatus(phase="Running", reason="R", message="M"), "", {"a": RUNNING}, ("R", "M")),
        (PodStatus(phase="Running", reason="R", message="M"), "New", {"a": RUNNING}, ("New", "M")),
        (PodStatus(phase="Pending", reason="R", message="M"), "", {"a": RUNNING}, ("", "")),
    ],
)
def test_reason_and_message(
    previous: PodStatus, reason: str, observed: dict[str, Obs], expected: tuple[str, str]
) -> None:
    status = pod_status(spec("a"), observed, previous=previous, now=T0, reason=reason)
    assert (status.reason, status.message) == expected


def test_pod_fields_kept_once_set() -> None:
    first = pod_status(spec("a"), {}, previous=PodStatus(), now=T0, host_ip="10.0.0.1", pod_ip="10.0.0.1")
    second = pod_status(spec("a"), {}, previous=first, now=T2)
    assert (second.start_time, second.host_ip, second.pod_ip) == (T0, "10.0.0.1", "10.0.0.1")
    assert not changed(first, second)


def test_container_statuses_in_spec_order() -> None:
    observed = {"b": RUNNING, "a": EXIT_0, "c": CREATING}
    status = pod_status(spec("c", "a", "b"), observed, previous=PodStatus(), now=T0)
    assert [s.name for s in status.container_statuses] == ["c", "a", "b"]


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ({"a": RUNNING}, {"a": RUNNING}, False),
        ({"a": RUNNING}, {"a": RUNNING_UNREADY}, True),
        ({"a": RUNNING}, {"a": Obs(Running(T0), ready=True, restart_count=1)}, True),
        ({"a": Obs(Waiting("ErrImagePull", "x"))}, {"a": Obs(Waiting("ErrImagePull", "y"))}, True),
        ({"a": Obs(Waiting("ErrImagePull", "x"))}, {"a": Obs(Waiting("ImagePullBackOff", "x"))}, True),
    ],
)
def test_changed(first: dict[str, Obs], second: dict[str, Obs], expected: bool) -> None:
    old = pod_status(spec("a"), first, previous=PodStatus(), now=T0)
    new = pod_status(spec("a"), second, previous=old, now=T1)
    assert changed(old, new) is expected
