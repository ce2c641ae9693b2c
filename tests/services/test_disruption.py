"""Zone disruption rules (Kubernetes' node lifecycle controller): zone states, eviction rates,
the token bucket, and the changes a new count makes. Pure functions, tables."""

from __future__ import annotations

import math

import pytest

from services.controllers.disruption import (
    EvictionLimits,
    TokenBucket,
    Zones,
    ZoneState,
    eviction_rates,
    zone_of,
    zone_state,
)

LIMITS = EvictionLimits()


@pytest.mark.parametrize(
    "ready,not_ready,state",
    [
        (3, 0, "Normal"),
        (2, 1, "Normal"),  # one node of three: a dead node, evicted
        (1, 2, "Normal"),  # Kubernetes needs more than 2 not ready for a partial disruption
        (0, 1, "FullDisruption"),  # a one-node zone whose node is down
        (0, 3, "FullDisruption"),
        (1, 3, "PartialDisruption"),  # 75%
        (2, 3, "PartialDisruption"),  # 60%
        (3, 3, "Normal"),  # 50% < 55%
        (45, 55, "PartialDisruption"),  # exactly the threshold
        (46, 54, "Normal"),
        (0, 0, "Normal"),  # no node at all
    ],
)
def test_zone_state(ready: int, not_ready: int, state: ZoneState) -> None:
    assert zone_state(ready, not_ready, threshold=0.55) == state


@pytest.mark.parametrize(
    "zones,rates",
    [
        ({"": (3, "Normal")}, {"": 0.1}),
        ({"": (3, "FullDisruption")}, {"": 0.0}),  # the only zone: our blindness, not the nodes'
        ({"a": (3, "FullDisruption"), "b": (3, "FullDisruption")}, {"a": 0.0, "b": 0.0}),
        ({"a": (3, "FullDisruption"), "b": (3, "Normal")}, {"a": 0.1, "b": 0.1}),  # zone a is gone
        ({"": (10, "PartialDisruption")}, {"": 0.0}),  # a small cluster: stop
        ({"": (51, "PartialDisruption")}, {"": 0.01}),  # a large one: slowly
        ({"": (50, "PartialDisruption")}, {"": 0.0}),  # more than 50 nodes is large
        ({"a": (60, "PartialDisruption"), "b": (5, "Normal")}, {"a": 0.01, "b": 0.1}),
        ({}, {}),
    ],
)
def test_eviction_rates(zones: dict[str, tuple[int, ZoneState]], rates: dict[str, float]) -> None:
    assert eviction_rates(zones, LIMITS) == rates


def test_zone_comes_from_the_kubernetes_label() -> None:
    assert zone_of({"topology.kubernetes.io/zone": "eu-1a"}) == "eu-1a"
    assert zone_of({}) == ""


def test_token_bucket_starts_full_and_refills_at_its_rate() -> None:
    bucket = TokenBucket(0.1)
    assert bucket.take(100.0)
    assert not bucket.take(100.0)
    assert bucket.wait(100.0) == pytest.approx(10.0)
    assert not bucket.take(105.0)
    assert bucket.wait(105.0) == pytest.approx(5.0)
    assert bucket.take(110.0)


def test_token_bucket_of_rate_zero_never_gives_one() -> None:
    bucket = TokenBucket(0.0)
    assert not bucket.take(0.0)
    assert bucket.wait(1e9) == math.inf


def test_zones_report_changes_and_swap_limiters() -> None:
    zones = Zones(LIMITS)
    first = zones.update({"": (3, 0)})
    assert [(c.state, c.before, c.rate, c.rate_before) for c in first] == [("Normal", None, 0.1, None)]
    assert zones.take("", 0.0) and not zones.take("", 1.0)  # one node per 10 s
    assert zones.update({"": (2, 1)}) == []  # still Normal: nothing to say, same limiter
    assert not zones.take("", 2.0)

    blind = zones.update({"": (0, 3)})
    assert [(c.state, c.rate, c.rate_before, c.not_ready, c.size) for c in blind] == [
        ("FullDisruption", 0.0, 0.1, 3, 3)
    ]
    assert zones.everywhere_disrupted
    assert not zones.take("", 3.0)  # a fresh limiter, but of rate 0

    back = zones.update({"": (2, 1)})
    assert [(c.state, c.rate) for c in back] == [("Normal", 0.1)]
    assert not zones.everywhere_disrupted
    assert zones.take("", 4.0)  # a fresh, full limiter
