"""From the metrics' proposal to the replica count to set: stabilization, rate limits, bounds.

Kubernetes' `behavior` rules (autoscaling/v2), without I/O:
- **Stabilization**: every proposal is remembered with its time. A scale-down goes only as low
  as the highest proposal of the last `scaleDown.stabilizationWindowSeconds` (default 300), so a
  short lull does not remove pods that the next burst needs; a scale-up only as high as the
  lowest proposal of the `scaleUp` window (default 0: at once).
- **Rate policies**: within each policy's `periodSeconds`, at most `value` pods or `value` percent
  of the replicas at the start of the period may be added (removed); `selectPolicy` Max picks the
  policy that allows the largest change, Min the smallest, Disabled forbids that direction.
  Defaults: up, the larger of 4 pods and 100% per 15 s; down, 100% per 15 s.
- **Bounds**: minReplicas and maxReplicas.

The result says which of these limited the count (the ScalingLimited condition).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from bus.resources.autoscaling import (
    HorizontalPodAutoscalerBehavior,
    HorizontalPodAutoscalerSpec,
    HPAScalingPolicy,
    HPAScalingRules,
)

DEFAULT_SCALE_DOWN_WINDOW = 300
DEFAULT_SCALE_UP = HPAScalingRules(
    stabilization_window_seconds=0,
    select_policy="Max",
    policies=[
        HPAScalingPolicy(type="Pods", value=4, period_seconds=15),
        HPAScalingPolicy(type="Percent", value=100, period_seconds=15),
    ],
)
DEFAULT_SCALE_DOWN = HPAScalingRules(
    stabilization_window_seconds=DEFAULT_SCALE_DOWN_WINDOW,
    select_policy="Max",
    policies=[HPAScalingPolicy(type="Percent", value=100, period_seconds=15)],
)


@dataclass(frozen=True)
class Timed:
    at: float  # seconds, on the controller's monotonic clock
    value: int  # a proposal, or a change of replicas (+ up, - down)


@dataclass
class History:
    """What one autoscaler remembers between syncs (in memory, as Kubernetes does)."""

    proposals: list[Timed] = field(default_factory=list)
    changes: list[Timed] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    replicas: int
    limited: str = ""  # a ScalingLimited reason, "" when the count is within every limit
    message: str = ""
    stabilized: bool = False  # a scale-down held back by the stabilization window


def rules(spec: HorizontalPodAutoscalerSpec) -> tuple[HPAScalingRules, HPAScalingRules]:
    """The scale-up and scale-down rules, Kubernetes' defaults filled in where left out."""
    behavior = spec.behavior or HorizontalPodAutoscalerBehavior()
    return _filled(behavior.scale_up, DEFAULT_SCALE_UP), _filled(behavior.scale_down, DEFAULT_SCALE_DOWN)


def _filled(given: HPAScalingRules | None, default: HPAScalingRules) -> HPAScalingRules:
    if given is None:
        return default
    return HPAScalingRules(
        stabilization_window_seconds=(
            given.stabilization_window_seconds
            if given.stabilization_window_seconds is not None
            else default.stabilization_window_seconds
        ),
        select_policy=given.select_policy,
        policies=given.policies or default.policies,
    )


def decide(
    spec: HorizontalPodAutoscalerSpec, current: int, proposal: int, history: History, *, now: float
) -> Decision:
    """The replica count to set now; records `proposal` in `history` (not the change: see
    `record_change`, to be called once the change is made)."""
    up_rules, down_rules = rules(spec)
    desired = _stabilize(proposal, current, history, up_rules, down_rules, now=now)
    held = proposal < current and desired > proposal
    if desired > current:
        limit = max(_limit(current, history, up_rules, now, up=True), current)  # never below what runs
        reason = "ScaleUpLimit"
        message = "the desired replica count is increasing faster than the maximum scale rate"
        if spec.max_replicas <= limit:
            limit, reason = spec.max_replicas, "TooManyReplicas"
            message = "the desired replica count is more than the maximum replica count"
        if desired > limit:
            return Decision(limit, reason, message, held)
    elif desired < current:
        limit = min(_limit(current, history, down_rules, now, up=False), current)
        reason = "ScaleDownLimit"
        message = "the desired replica count is decreasing faster than the maximum scale rate"
        if spec.min_replicas >= limit:
            limit, reason = spec.min_replicas, "TooFewReplicas"
            message = "the desired replica count is less than the minimum replica count"
        if desired < limit:
            return Decision(limit, reason, message, held)
    return Decision(desired, stabilized=held)


def record_change(history: History, change: int, *, now: float, keep: float = 1800.0) -> None:
    """Note a change of replicas the autoscaler made, for the rate policies."""
    history.changes = [c for c in history.changes if now - c.at <= keep] + [Timed(now, change)]


def _stabilize(
    proposal: int,
    current: int,
    history: History,
    up: HPAScalingRules,
    down: HPAScalingRules,
    *,
    now: float,
) -> int:
    up_window = up.stabilization_window_seconds or 0
    down_window = down.stabilization_window_seconds or 0
    recent = [p for p in history.proposals if now - p.at <= max(up_window, down_window)]
    history.proposals = [*recent, Timed(now, proposal)]
    if proposal >= current:
        window = [p.value for p in recent if now - p.at <= up_window]
        return min([proposal, *window])
    window = [p.value for p in recent if now - p.at <= down_window]
    return max([proposal, *window])


def _changed_within(period: float, changes: Sequence[Timed], now: float, *, sign: int) -> int:
    return sum(abs(c.value) for c in changes if now - c.at <= period and c.value * sign > 0)


def _limit(current: int, history: History, rules: HPAScalingRules, now: float, *, up: bool) -> int:
    """How far the policies let the replicas go up (or down) from where each period began."""
    if rules.select_policy == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        added = _changed_within(policy.period_seconds, history.changes, now, sign=1)
        removed = _changed_within(policy.period_seconds, history.changes, now, sign=-1)
        start = current - added + removed
        if policy.type == "Pods":
            proposals.append(start + policy.value if up else start - policy.value)
        elif up:
            proposals.append(math.ceil(start * (1 + policy.value / 100)))
        else:
            proposals.append(int(start * (1 - policy.value / 100)))
    if not proposals:
        return current
    # "Max" picks the policy allowing the largest change: the highest limit up, the lowest down.
    largest = rules.select_policy != "Min"
    return max(proposals) if largest == up else min(proposals)
