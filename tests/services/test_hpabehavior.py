"""Stabilization windows, rate policies and bounds of autoscaling/v2 `behavior`."""

from __future__ import annotations

import pytest

from bus.resources.autoscaling import (
    CrossVersionObjectReference,
    HorizontalPodAutoscalerBehavior,
    HorizontalPodAutoscalerSpec,
    HPAScalingPolicy,
    HPAScalingRules,
)
from services.controllers.hpabehavior import History, decide, record_change, rules


def spec(
    *,
    min_replicas: int = 1,
    max_replicas: int = 100,
    up: HPAScalingRules | None = None,
    down: HPAScalingRules | None = None,
) -> HorizontalPodAutoscalerSpec:
    behavior = HorizontalPodAutoscalerBehavior(scale_up=up, scale_down=down) if up or down else None
    return HorizontalPodAutoscalerSpec(
        scale_target_ref=CrossVersionObjectReference(kind="Deployment", name="web"),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        behavior=behavior,
    )


def test_defaults_are_kubernetes_own() -> None:
    up, down = rules(spec())
    assert up.stabilization_window_seconds == 0
    assert [(p.type, p.value, p.period_seconds) for p in up.policies] == [
        ("Pods", 4, 15),
        ("Percent", 100, 15),
    ]
    assert down.stabilization_window_seconds == 300
    assert [(p.type, p.value, p.period_seconds) for p in down.policies] == [("Percent", 100, 15)]
    # A window alone keeps the default policies.
    _, down = rules(spec(down=HPAScalingRules(stabilization_window_seconds=5)))
    assert down.stabilization_window_seconds == 5 and down.policies[0].type == "Percent"


def test_scale_down_waits_for_the_highest_recent_proposal_to_age_out() -> None:
    s, history = spec(down=HPAScalingRules(stabilization_window_seconds=60)), History()
    assert decide(s, 5, 8, history, now=0.0).replicas == 8  # a scale-up goes at once
    held = decide(s, 8, 2, history, now=30.0)
    assert held.replicas == 8 and held.stabilized  # the proposal of 30 s ago was 8
    assert decide(s, 8, 3, history, now=61.0).replicas == 3  # 8 aged out; 2 (at 30 s) < 3
    assert decide(s, 3, 1, history, now=95.0).replicas == 3  # 3 (at 61 s) is still recent
    assert decide(s, 3, 1, history, now=122.0).replicas == 1


def test_scale_up_window_takes_the_lowest_recent_proposal() -> None:
    s, history = spec(up=HPAScalingRules(stabilization_window_seconds=60)), History()
    decide(s, 2, 2, history, now=0.0)
    assert decide(s, 2, 10, history, now=10.0).replicas == 2
    assert decide(s, 2, 10, history, now=61.0).replicas == 6  # then the rate: 2 + 4 pods


@pytest.mark.parametrize(
    ("current", "proposal", "expected", "reason"),
    [
        (2, 50, 6, "ScaleUpLimit"),  # default: max(2 + 4 pods, 2 * 2)
        (10, 50, 20, "ScaleUpLimit"),  # 100% beats 4 pods
        (10, 15, 15, ""),
        (10, 500, 20, "ScaleUpLimit"),
        (60, 500, 100, "TooManyReplicas"),  # the rate would allow 120, the maximum says 100
        (10, 0, 1, "TooFewReplicas"),  # 100% per period down: only the minimum holds it
    ],
)
def test_rates_and_bounds(current: int, proposal: int, expected: int, reason: str) -> None:
    s = spec(down=HPAScalingRules(stabilization_window_seconds=0))
    decision = decide(s, current, proposal, History(), now=0.0)
    assert (decision.replicas, decision.limited) == (expected, reason)


def test_changes_within_the_period_count_against_the_policy() -> None:
    s = spec(up=HPAScalingRules(policies=[HPAScalingPolicy(type="Pods", value=2, period_seconds=60)]))
    history = History()
    assert decide(s, 2, 10, history, now=0.0).replicas == 4
    record_change(history, 2, now=0.0)
    assert decide(s, 4, 10, history, now=30.0).replicas == 4  # 2 added this minute already
    assert decide(s, 4, 10, history, now=61.0).replicas == 6


def test_select_policy_min_and_disabled() -> None:
    both = [
        HPAScalingPolicy(type="Pods", value=1, period_seconds=15),
        HPAScalingPolicy(type="Percent", value=50, period_seconds=15),
    ]
    down = HPAScalingRules(stabilization_window_seconds=0, select_policy="Min", policies=both)
    assert decide(spec(down=down), 10, 1, History(), now=0.0).replicas == 9  # the smaller step
    down = HPAScalingRules(stabilization_window_seconds=0, select_policy="Max", policies=both)
    assert decide(spec(down=down), 10, 1, History(), now=0.0).replicas == 5
    off = HPAScalingRules(stabilization_window_seconds=0, select_policy="Disabled")
    decision = decide(spec(down=off), 10, 1, History(), now=0.0)
    assert (decision.replicas, decision.limited) == (10, "ScaleDownLimit")
