from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from bus.resources.pod import (
    Container,
    ContainerState,
    ContainerStateRunning,
    ContainerStateTerminated,
    ContainerStateWaiting,
    ContainerStatus,
    PodCondition,
    PodSpec,
    PodStatus,
)
from nodeagent.podstatus import assemble, changed, pod_phase, terminated_reason

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
T2 = T0 + timedelta(minutes=2)
POLICIES = ("Always", "OnFailure", "Never")


def spec(*names: str, policy: str = "Always", node: str = "n1") -> PodSpec:
    return PodSpec(
        containers=[Container(name=n, image=f"{n}:1") for n in names],
        restart_policy=policy,  # type: ignore[arg-type]
        node_name=node,
    )


def spec_of(statuses: list[ContainerStatus], *, policy: str = "Always") -> PodSpec:
    """The pod whose containers are those of `statuses`, in that order."""
    return spec(*(s.name for s in statuses), policy=policy)


# Container statuses as the agent keeps them (nodeagent/containers.py), built directly.


def running(name: str, *, ready: bool = True, restarts: int = 0) -> ContainerStatus:
    state = ContainerState(running=ContainerStateRunning(started_at=T0))
    return ContainerStatus(
        name=name, image=f"{name}:1", ready=ready, started=True, restart_count=restarts, state=state
    )


def unready(name: str) -> ContainerStatus:
    return running(name, ready=False)


def ended(exit_code: int) -> ContainerState:
    return ContainerState(
        terminated=ContainerStateTerminated(exit_code=exit_code, reason=terminated_reason(exit_code))
    )


def exited(name: str, exit_code: int) -> ContainerStatus:
    return ContainerStatus(name=name, image=f"{name}:1", started=False, state=ended(exit_code))


def waiting(
    name: str, reason: str = "ContainerCreating", message: str = "", *, after: int | None = None
) -> ContainerStatus:
    """Waiting for its first start; with `after` (an exit code), waiting to be restarted after it."""
    state = ContainerState(waiting=ContainerStateWaiting(reason=reason, message=message))
    return ContainerStatus(
        name=name,
        image=f"{name}:1",
        started=False,
        state=state,
        last_state=ContainerState() if after is None else ended(after),
        restart_count=0 if after is None else 1,
    )


def backoff(name: str, *, after: int) -> ContainerStatus:
    return waiting(name, "CrashLoopBackOff", after=after)


@pytest.mark.parametrize(
    ("statuses", "always", "on_failure", "never"),
    [
        ([waiting("a")], "Pending", "Pending", "Pending"),
        ([running("a"), waiting("b")], "Pending", "Pending", "Pending"),
        ([running("a")], "Running", "Running", "Running"),
        ([running("a"), exited("b", 0)], "Running", "Running", "Running"),
        ([running("a"), exited("b", 1)], "Running", "Running", "Running"),
        ([exited("a", 0)], "Running", "Succeeded", "Succeeded"),
        ([exited("a", 0), exited("b", 0)], "Running", "Succeeded", "Succeeded"),
        ([exited("a", 1)], "Running", "Running", "Failed"),
        ([exited("a", 0), exited("b", 1)], "Running", "Running", "Failed"),
        # waiting to be restarted counts as stopped, never as succeeded
        ([backoff("a", after=1)], "Running", "Running", "Failed"),
        ([backoff("a", after=0)], "Running", "Running", "Failed"),
        ([running("a"), backoff("b", after=1)], "Running", "Running", "Running"),
    ],
)
def test_phase_per_restart_policy(
    statuses: list[ContainerStatus], always: str, on_failure: str, never: str
) -> None:
    phases = [pod_phase(spec_of(statuses, policy=p), statuses) for p in POLICIES]
    assert phases == [always, on_failure, never]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([exited("a", 0)], "Succeeded"),
        ([exited("a", 1)], "Failed"),
        ([exited("a", 0), backoff("b", after=0)], "Failed"),  # waiting to restart: not succeeded
        # 137: how a container the pod stopped for good ended, or how one never started is reported
        ([exited("a", 0), exited("b", 137)], "Failed"),
        ([exited("a", 137)], "Failed"),
    ],
)
def test_phase_of_a_terminal_pod(statuses: list[ContainerStatus], expected: str) -> None:
    """Whatever the restart policy: the containers will not be started again."""
    phases = {pod_phase(spec_of(statuses, policy=p), statuses, terminal=True) for p in POLICIES}
    assert phases == {expected}


def test_missing_container_status_keeps_pending() -> None:
    assert pod_phase(spec("a", "b"), [running("a")]) == "Pending"


@pytest.mark.parametrize(
    ("exit_code", "oom", "reason"),
    [(0, False, "Completed"), (1, False, "Error"), (137, False, "Error"), (137, True, "OOMKilled")],
)
def test_terminated_reason(exit_code: int, oom: bool, reason: str) -> None:
    assert terminated_reason(exit_code, oom_killed=oom) == reason


def conditions_of(status: PodStatus) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in status.conditions}


NOT_READY = ("False", "ContainersNotReady", "containers with unready status: [b]")


@pytest.mark.parametrize(
    ("statuses", "policy", "terminating", "ready", "containers_ready", "initialized"),
    [
        ([running("a")], "Always", False, ("True", "", ""), ("True", "", ""), ("True", "", "")),
        ([running("a"), unready("b")], "Always", False, NOT_READY, NOT_READY, ("True", "", "")),
        ([running("a"), waiting("b")], "Always", False, NOT_READY, NOT_READY, ("True", "", "")),
        (
            [unready("a"), unready("b")],
            "Always",
            False,
            ("False", "ContainersNotReady", "containers with unready status: [a b]"),
            ("False", "ContainersNotReady", "containers with unready status: [a b]"),
            ("True", "", ""),
        ),
        (
            [running("a")],
            "Always",
            True,
            ("False", "Terminating", "the pod is being deleted"),
            ("True", "", ""),
            ("True", "", ""),
        ),
        (
            [exited("a", 0)],
            "Never",
            False,
            ("False", "PodCompleted", ""),
            ("False", "PodCompleted", ""),
            ("True", "PodCompleted", ""),
        ),
        (
            [exited("a", 1)],
            "Never",
            False,
            ("False", "PodFailed", ""),
            ("False", "PodFailed", ""),
            ("True", "", ""),
        ),
    ],
)
def test_conditions(
    statuses: list[ContainerStatus],
    policy: str,
    terminating: bool,
    ready: tuple[str, str, str],
    containers_ready: tuple[str, str, str],
    initialized: tuple[str, str, str],
) -> None:
    pod = spec_of(statuses, policy=policy)
    status = assemble(pod, statuses, previous=PodStatus(), now=T0, terminating=terminating)
    assert conditions_of(status) == {
        "Initialized": initialized,
        "Ready": ready,
        "ContainersReady": containers_ready,
        "PodScheduled": ("True", "", ""),
    }
    assert [c.type for c in status.conditions] == ["Initialized", "Ready", "ContainersReady", "PodScheduled"]


def test_unbound_pod_has_no_pod_scheduled_of_its_own() -> None:
    status = assemble(spec("a", node=""), [waiting("a")], previous=PodStatus(), now=T0)
    assert "PodScheduled" not in conditions_of(status)


def times_of(status: PodStatus) -> dict[str, datetime | None]:
    return {c.type: c.last_transition_time for c in status.conditions}


@pytest.mark.parametrize(
    ("first", "second", "moved"),
    [
        # nothing changed: every time stays
        ([running("a")], [running("a")], set()),
        # readiness flips: Ready and ContainersReady move, the others stay
        ([unready("a")], [running("a")], {"Ready", "ContainersReady"}),
        ([running("a")], [unready("a")], {"Ready", "ContainersReady"}),
        # a message changes but the status does not: the time stays
        ([unready("a"), running("b")], [running("a"), unready("b")], set()),
    ],
)
def test_transition_times(
    first: list[ContainerStatus], second: list[ContainerStatus], moved: set[str]
) -> None:
    before = assemble(spec_of(first), first, previous=PodStatus(), now=T0)
    after = assemble(spec_of(second), second, previous=before, now=T1)
    expected = {t: (T1 if t in moved else T0) for t in times_of(before)}
    assert times_of(after) == expected


def test_transition_time_survives_the_wire() -> None:
    before = assemble(spec("a"), [running("a")], previous=PodStatus(), now=T0)
    stored = msgspec.json.decode(msgspec.json.encode(before), type=PodStatus)
    again = assemble(spec("a"), [running("a")], previous=stored, now=T1)
    assert not changed(stored, again)


def test_conditions_of_others_are_kept() -> None:
    theirs = PodCondition(type="DisruptionTarget", status="True", reason="EvictionByEvictionAPI")
    scheduled = PodCondition(type="PodScheduled", status="True", last_transition_time=T0 - timedelta(hours=1))
    previous = PodStatus(conditions=[scheduled, theirs])
    status = assemble(spec("a"), [running("a")], previous=previous, now=T0)
    assert status.conditions[-1] == theirs
    assert times_of(status)["PodScheduled"] == T0 - timedelta(hours=1)


@pytest.mark.parametrize(
    ("previous_phase", "statuses", "policy", "expected"),
    [
        ("Pending", [running("a")], "Always", "Running"),
        ("Running", [exited("a", 1)], "Never", "Failed"),
        # terminal phases are never left, whatever is observed later
        ("Succeeded", [waiting("a")], "Never", "Succeeded"),
        ("Failed", [running("a")], "Never", "Failed"),
        ("Failed", [exited("a", 0)], "Never", "Failed"),
    ],
)
def test_terminal_phase_is_sticky(
    previous_phase: str, statuses: list[ContainerStatus], policy: str, expected: str
) -> None:
    previous = PodStatus(phase=previous_phase)  # type: ignore[arg-type]
    status = assemble(spec_of(statuses, policy=policy), statuses, previous=previous, now=T0)
    assert status.phase == expected


@pytest.mark.parametrize(
    ("previous", "reason", "expected"),
    [
        (PodStatus(phase="Running", reason="R", message="M"), "", ("R", "M")),
        (PodStatus(phase="Running", reason="R", message="M"), "New", ("New", "M")),
        (PodStatus(phase="Pending", reason="R", message="M"), "", ("", "")),
    ],
)
def test_reason_and_message(previous: PodStatus, reason: str, expected: tuple[str, str]) -> None:
    status = assemble(spec("a"), [running("a")], previous=previous, now=T0, reason=reason)
    assert (status.reason, status.message) == expected


def test_pod_fields_kept_once_set() -> None:
    first = assemble(
        spec("a"), [waiting("a")], previous=PodStatus(), now=T0, host_ip="10.0.0.1", pod_ip="10.0.0.1"
    )
    second = assemble(spec("a"), [waiting("a")], previous=first, now=T2)
    assert (second.start_time, second.host_ip, second.pod_ip) == (T0, "10.0.0.1", "10.0.0.1")
    assert not changed(first, second)


def test_container_statuses_are_reported_as_given() -> None:
    statuses = [waiting("c"), exited("a", 0), running("b")]
    status = assemble(spec("c", "a", "b"), statuses, previous=PodStatus(), now=T0)
    assert status.container_statuses == statuses


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (running("a"), running("a"), False),
        (running("a"), unready("a"), True),
        (running("a"), running("a", restarts=1), True),
        (waiting("a", "ErrImagePull", "x"), waiting("a", "ErrImagePull", "y"), True),
        (waiting("a", "ErrImagePull", "x"), waiting("a", "ImagePullBackOff", "x"), True),
    ],
)
def test_changed(first: ContainerStatus, second: ContainerStatus, expected: bool) -> None:
    old = assemble(spec("a"), [first], previous=PodStatus(), now=T0)
    new = assemble(spec("a"), [second], previous=old, now=T1)
    assert changed(old, new) is expected
