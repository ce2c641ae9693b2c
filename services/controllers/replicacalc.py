"""How many replicas one metric asks for: Kubernetes' replica calculator, without any I/O.

The rule is `desired = ceil(current * metric / target)`, left alone while the ratio is within
`TOLERANCE` (10%) of 1, so that noise does not make the workload flap. Every pod carries its own
share of the target (its CPU request times the target utilization, or the target average
value), so utilization and per-pod averages are one computation: ratio = sum(values) /
sum(targets) over the measured pods, and the "current" count is the number of pods measured.

Pods that are not measured are handled as Kubernetes does, so that a scale decision is never
made on the pods that happen to report:
- a pod without a measurement counts as using its target on a scale-down (0 on a scale-up), so
  a new pod does not trigger a scale-down and a crashed one no scale-up;
- for CPU, a pod that is not Ready counts as using nothing on a scale-up (its start-up burst is
  not load), and is left out otherwise;
- when these assumptions would reverse the direction, or bring the ratio within tolerance, the
  replica count stays as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

TOLERANCE = 0.1


class NoMetrics(Exception):
    """No pod of the target has a measurement to decide on."""


@dataclass(frozen=True)
class PodValue:
    """One pod's measurement (None: none yet) and its share of the target, in the same unit."""

    value: float | None
    target: float
    ready: bool = True  # only CPU treats pods that are not Ready apart (callers pass True otherwise)
    fallback: float | None = None  # assumed use of an unmeasured pod on a scale-down (default: target)


@dataclass(frozen=True)
class Proposal:
    replicas: int
    ratio: float  # measured pods' use over their target (1.0 = on target)
    average: float  # measured pods' mean value, in the metric's unit


def ratio_of(values: Sequence[tuple[float, float]]) -> float:
    total_target = sum(t for _, t in values)
    return sum(v for v, _ in values) / total_target if total_target > 0 else 0.0


def propose(current: int, pods: Sequence[PodValue], *, tolerance: float = TOLERANCE) -> Proposal:
    """The replica count this metric asks for; NoMetrics when no ready pod is measured."""
    measured = [(p.value, p.target) for p in pods if p.ready and p.value is not None]
    if not measured:
        raise NoMetrics("no measurement for any ready pod of the target (pods may be starting)")
    unready = [p for p in pods if not p.ready]
    missing = [p for p in pods if p.ready and p.value is None]
    ratio = ratio_of(measured)
    average = sum(v for v, _ in measured) / len(measured)
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if abs(1.0 - ratio) <= tolerance:
            return Proposal(current, ratio, average)
        return Proposal(math.ceil(ratio * len(measured) - 1e-9), ratio, average)

    assumed = list(measured)
    for pod in missing:
        use = (pod.fallback if pod.fallback is not None else pod.target) if ratio < 1.0 else 0.0
        assumed.append((use, pod.target))
    if scale_up_with_unready:
        assumed += [(0.0, pod.target) for pod in unready]
    new_ratio = ratio_of(assumed)
    if (
        abs(1.0 - new_ratio) <= tolerance
        or (ratio < 1.0 and new_ratio > 1.0)
        or (ratio > 1.0 and new_ratio < 1.0)
    ):
        return Proposal(current, ratio, average)
    replicas = math.ceil(new_ratio * len(assumed) - 1e-9)
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return Proposal(current, ratio, average)
    return Proposal(replicas, ratio, average)
