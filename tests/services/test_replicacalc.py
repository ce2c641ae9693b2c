"""Kubernetes' replica calculator: ceil(current * metric / target), tolerance, unmeasured pods."""

from __future__ import annotations

import pytest

from services.controllers.replicacalc import NoMetrics, PodValue, propose


def pods(*values: float | None, target: float = 100.0, ready: bool = True) -> list[PodValue]:
    return [PodValue(v, target, ready) for v in values]


@pytest.mark.parametrize(
    ("current", "values", "expected"),
    [
        (2, pods(200, 200), 4),  # twice the target: twice the pods
        (3, pods(150, 150, 150), 5),  # ceil(4.5)
        (4, pods(50, 50, 50, 50), 2),
        (4, pods(10, 10, 10, 10), 1),
        (2, pods(109, 109), 2),  # within the 10% tolerance: unchanged
        (2, pods(91, 91), 2),
        (2, pods(111, 111), 3),  # just beyond it
        (10, pods(*[30.0] * 10), 3),  # ceil(3.0), not 4 through float error
        (1, pods(0), 0),  # no use at all: the bounds (minReplicas) come later
    ],
)
def test_the_rule(current: int, values: list[PodValue], expected: int) -> None:
    assert propose(current, values).replicas == expected


def test_ratio_and_average_of_the_measured_pods() -> None:
    proposal = propose(2, [PodValue(150, 100), PodValue(50, 50)])
    assert proposal.ratio == pytest.approx(200 / 150)
    assert proposal.average == 100


def test_unmeasured_pods_count_as_at_target_on_a_scale_down() -> None:
    # Two idle pods and two new ones without figures: the new ones are assumed on target, so
    # the count does not drop to 1 just because half the pods have not reported yet.
    assert propose(4, pods(10, 10, None, None)).replicas == 3
    # And a scale-up is not cancelled by them: they count as using nothing.
    assert propose(4, pods(300, 300, None, None)).replicas == 6


def test_the_assumptions_never_reverse_the_direction() -> None:
    # Measured pods want a scale-up (ratio 1.5); with the unmeasured ones at 0 the ratio is below 1.
    assert propose(4, pods(150, None, None, None)).replicas == 4


def test_unready_pods_do_not_inflate_a_scale_up() -> None:
    # One ready pod at 300%, three starting pods: they count as 0, so 300/400 -> within the rule.
    values = pods(300) + pods(None, None, None, ready=False)
    assert propose(4, values).replicas == 4
    # Without them the ready pod alone would have asked for 3.
    assert propose(1, pods(300)).replicas == 3


def test_unready_pods_are_left_out_of_a_scale_down() -> None:
    values = pods(20, 20) + pods(500, ready=False)  # a start-up burst says nothing of the load
    assert propose(3, values).replicas == 1


def test_a_utilization_below_100_percent_assumes_unmeasured_pods_use_their_whole_request() -> None:
    # Request 100, target 50%: a share of 50, but an unmeasured pod is assumed at 100 (its request).
    measured = [PodValue(5, 50)] * 3
    assert propose(4, [*measured, PodValue(None, 50, fallback=100)]).replicas == 3
    assert propose(4, [*measured, PodValue(None, 50)]).replicas == 2


def test_no_measurement_at_all() -> None:
    with pytest.raises(NoMetrics):
        propose(3, pods(None, None))
    with pytest.raises(NoMetrics):
        propose(3, pods(100, ready=False))
    with pytest.raises(NoMetrics):
        propose(3, [])
