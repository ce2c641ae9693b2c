"""Node health taints and taint-based eviction times: pure functions, as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bus.resources.cluster import NodeCondition, Taint
from bus.resources.pod import PodCondition, Toleration
from services.controllers.nodetaints import (
    NOT_READY,
    UNKNOWN_REASON,
    UNREACHABLE,
    eviction_delay,
    health_taint,
    pod_not_ready,
    ready_status,
    unknown_conditions,
    with_health_taints,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
LATER = T0 + timedelta(seconds=30)
UNREACHABLE_TAINT = Taint(key=UNREACHABLE, effect="NoExecute")
NOT_READY_TAINT = Taint(key=NOT_READY, effect="NoExecute")
GPU = Taint(key="dedicated", value="gpu", effect="NoExecute")


@pytest.mark.parametrize(
    ("conditions", "status", "taint"),
    [
        ([NodeCondition(type="Ready", status="True")], "True", None),
        ([NodeCondition(type="Ready", status="False")], "False", NOT_READY),
        ([NodeCondition(type="Ready", status="Unknown")], "Unknown", UNREACHABLE),
        ([], "Unknown", UNREACHABLE),
    ],
)
def test_ready_status_and_its_taint(conditions: list[NodeCondition], status: str, taint: str | None) -> None:
    assert ready_status(conditions) == status
    assert health_taint(ready_status(conditions)) == taint


def test_health_taints_replace_the_other_key_keep_their_time_and_leave_user_taints() -> None:
    user = Taint(key="dedicated", value="gpu", effect="NoSchedule")
    user_prefer = Taint(key=UNREACHABLE, effect="PreferNoSchedule")  # same key, other effect: not ours
    old_schedule = Taint(key=NOT_READY, effect="NoSchedule", time_added=T0)
    old_execute = Taint(key=NOT_READY, effect="NoExecute", time_added=T0)
    later = T0 + timedelta(seconds=30)
    both = [user, old_schedule, old_execute]
    assert with_health_taints(both, NOT_READY, evicting=True, at=later) == both  # timeAdded kept
    assert with_health_taints(both, UNREACHABLE, evicting=True, at=later) == [
        user,
        Taint(key=UNREACHABLE, effect="NoSchedule", time_added=later),
        Taint(key=UNREACHABLE, effect="NoExecute", time_added=later),
    ]
    assert with_health_taints([user, user_prefer, *both[1:]], None, evicting=False, at=later) == [
        user,
        user_prefer,
    ]


@pytest.mark.parametrize(
    "taints,evicting,expected",
    [
        ([], False, [(NOT_READY, "NoSchedule", LATER)]),  # unhealthy: no new pods at once
        ([], True, [(NOT_READY, "NoSchedule", LATER), (NOT_READY, "NoExecute", LATER)]),
        # released for eviction later on: NoExecute added, NoSchedule keeps its time
        (
            [(NOT_READY, "NoSchedule", T0)],
            True,
            [(NOT_READY, "NoSchedule", T0), (NOT_READY, "NoExecute", LATER)],
        ),
        # released no more (every zone disrupted): NoExecute goes, NoSchedule stays
        (
            [(NOT_READY, "NoSchedule", T0), (NOT_READY, "NoExecute", T0)],
            False,
            [(NOT_READY, "NoSchedule", T0)],
        ),
    ],
)
def test_no_execute_only_when_evicting(
    taints: list[tuple[str, str, datetime]], evicting: bool, expected: list[tuple[str, str, datetime]]
) -> None:
    given = [Taint(key=k, effect=e, time_added=t) for k, e, t in taints]  # type: ignore[arg-type]
    found = with_health_taints(given, NOT_READY, evicting=evicting, at=LATER)
    assert [(t.key, t.effect, t.time_added) for t in found] == expected


def test_unknown_conditions_keep_heartbeats_and_transition_times_of_unknown_ones() -> None:
    beat = T0 - timedelta(seconds=20)
    at = T0
    ready = NodeCondition(type="Ready", status="True", last_heartbeat_time=beat, last_transition_time=beat)
    [unknown] = unknown_conditions([ready], at)
    assert (unknown.status, unknown.reason) == ("Unknown", UNKNOWN_REASON)
    assert unknown.last_heartbeat_time == beat and unknown.last_transition_time == at
    [again] = unknown_conditions([unknown], at + timedelta(seconds=5))
    assert again.last_transition_time == at
    [missing] = unknown_conditions([], at)
    assert (missing.type, missing.status) == ("Ready", "Unknown")


def tol(key: str = UNREACHABLE, seconds: int | None = None, *, effect: str = "NoExecute") -> Toleration:
    return Toleration(key=key, operator="Exists", effect=effect, toleration_seconds=seconds)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tolerations", "taints", "expected"),
    [
        # No toleration of its own: the default (5 s) for the managed taints, counted from timeAdded.
        ([], [(UNREACHABLE_TAINT, T0)], 5.0),
        ([], [(UNREACHABLE_TAINT, T0 - timedelta(seconds=3))], 2.0),
        ([], [(NOT_READY_TAINT, T0 - timedelta(seconds=60))], 0.0),
        # Its own toleration wins over the default, with or without tolerationSeconds.
        ([tol(seconds=30)], [(UNREACHABLE_TAINT, T0)], 30.0),
        ([tol()], [(UNREACHABLE_TAINT, T0)], None),
        ([Toleration(operator="Exists")], [(UNREACHABLE_TAINT, T0), (GPU, T0)], None),
        ([tol(seconds=0)], [(UNREACHABLE_TAINT, T0)], 0.0),
        # A toleration for another key does not help; nor does one for another effect.
        ([tol(key=NOT_READY)], [(UNREACHABLE_TAINT, T0)], 5.0),
        ([tol(effect="NoSchedule")], [(UNREACHABLE_TAINT, T0)], 5.0),
        # A user's NoExecute taint not tolerated: at once; tolerated: as long as it says.
        ([], [(GPU, T0)], 0.0),
        ([Toleration(key="dedicated", value="gpu", effect="NoExecute")], [(GPU, T0)], None),
        ([Toleration(key="dedicated", value="cpu", effect="NoExecute")], [(GPU, T0)], 0.0),
        # Several taints: the first to run out decides.
        ([tol(seconds=30), tol(key="dedicated", seconds=10)], [(UNREACHABLE_TAINT, T0), (GPU, T0)], 10.0),
    ],
)
def test_eviction_delay(
    tolerations: list[Toleration], taints: list[tuple[Taint, datetime]], expected: float | None
) -> None:
    assert eviction_delay(tolerations, taints, default_seconds=5, now=T0) == expected


def test_pod_not_ready_turns_only_a_true_ready_condition_false() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    scheduled = PodCondition(type="PodScheduled", status="True")
    ready = PodCondition(type="Ready", status="True", last_transition_time=at - timedelta(hours=1))
    assert pod_not_ready([scheduled, ready], at) == [
        scheduled,
        PodCondition(type="Ready", status="False", last_transition_time=at),
    ]
    assert pod_not_ready([scheduled, PodCondition(type="Ready", status="False")], at) is None
    assert pod_not_ready([scheduled], at) is None
