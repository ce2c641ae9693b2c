"""Zone disruption: whether the pods of unhealthy nodes are evicted, and how fast.

Kubernetes' node lifecycle rules, without I/O. Nodes are grouped in zones (the label
`topology.kubernetes.io/zone`; unlabelled nodes form one zone). A zone's state comes from how
many of its nodes are not ready (silent, or reporting Ready=False):

- **FullDisruption**: none is ready;
- **PartialDisruption**: more than 2 are not ready, and at least `unhealthy_zone_threshold`
  (55%) of them;
- **Normal** otherwise.

A node's evictions begin (its NoExecute taint goes on) at most at its zone's rate: a token
bucket of one token, refilled at `node_eviction_rate` (0.1 node/s) in a Normal zone and in a
fully disrupted one (its nodes are probably gone, while others are fine); in a partially
disrupted zone at `secondary_node_eviction_rate` (0.01/s) if it has more than
`large_cluster_size_threshold` (50) nodes, else not at all. When every zone is fully disrupted
the fault is most likely ours or the network's, not the nodes': no eviction anywhere.

Many nodes falling silent together means that *we* (or the network between us and them) lost
them, not that they all died; evicting would turn a blink into an outage of every workload.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ZONE_LABEL = "topology.kubernetes.io/zone"
EPSILON = 1e-9  # a token refilled in tenths is whole, whatever the float sums say

ZoneState = Literal["Normal", "PartialDisruption", "FullDisruption"]


@dataclass(frozen=True)
class EvictionLimits:
    """Kubernetes' kube-controller-manager flags of the same names, with its defaults."""

    node_eviction_rate: float = 0.1  # nodes per second
    secondary_node_eviction_rate: float = 0.01
    large_cluster_size_threshold: int = 50
    unhealthy_zone_threshold: float = 0.55


def zone_of(labels: Mapping[str, str]) -> str:
    return labels.get(ZONE_LABEL, "")


def zone_state(ready: int, not_ready: int, *, threshold: float) -> ZoneState:
    """Kubernetes' ComputeZoneState."""
    if ready == 0 and not_ready > 0:
        return "FullDisruption"
    if not_ready > 2 and not_ready / (ready + not_ready) >= threshold:
        return "PartialDisruption"
    return "Normal"


def eviction_rates(zones: Mapping[str, tuple[int, ZoneState]], limits: EvictionLimits) -> dict[str, float]:
    """Nodes per second whose evictions may begin, per zone (`zones`: size and state)."""
    if zones and all(state == "FullDisruption" for _, state in zones.values()):
        return dict.fromkeys(zones, 0.0)
    rates = {}
    for zone, (size, state) in zones.items():
        if state == "PartialDisruption":
            large = size > limits.large_cluster_size_threshold
            rates[zone] = limits.secondary_node_eviction_rate if large else 0.0
        else:
            rates[zone] = limits.node_eviction_rate
    return rates


@dataclass
class TokenBucket:
    """One token at most, refilled at `rate` per second; starts full, unless its rate is 0:
    then it never gives one (as Kubernetes' never-rate-limiter)."""

    rate: float
    tokens: float = 1.0
    last: float | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0:
            self.tokens = 0.0

    def take(self, now: float) -> bool:
        if self.last is not None and self.rate > 0:
            self.tokens = min(1.0, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0 - EPSILON:
            self.tokens = max(self.tokens - 1.0, 0.0)
            return True
        return False

    def wait(self, now: float) -> float:
        """Seconds until a token could be taken (inf when the rate is 0)."""
        if self.tokens >= 1.0 - EPSILON:
            return 0.0
        if self.rate <= 0:
            return math.inf
        since = now - self.last if self.last is not None else 0.0
        return max((1.0 - self.tokens) / self.rate - since, 0.0)


@dataclass(frozen=True)
class ZoneChange:
    zone: str
    state: ZoneState
    before: ZoneState | None
    size: int
    not_ready: int
    rate: float
    rate_before: float | None


@dataclass
class Zones:
    """Each zone's state and rate limiter, as of the last `update`."""

    limits: EvictionLimits = field(default_factory=EvictionLimits)
    states: dict[str, ZoneState] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    @property
    def everywhere_disrupted(self) -> bool:
        return bool(self.states) and all(s == "FullDisruption" for s in self.states.values())

    def update(self, counts: Mapping[str, tuple[int, int]]) -> list[ZoneChange]:
        """New counts of (ready, not ready) nodes per zone; the zones whose state or rate changed.
        A zone whose rate changed gets a new, full bucket (as Kubernetes swaps its limiter)."""
        states = {
            zone: zone_state(ready, not_ready, threshold=self.limits.unhealthy_zone_threshold)
            for zone, (ready, not_ready) in counts.items()
        }
        rates = eviction_rates(
            {zone: (sum(counts[zone]), state) for zone, state in states.items()}, self.limits
        )
        changes = []
        for zone, state in states.items():
            before, rate_before = self.states.get(zone), self.rates.get(zone)
            if before != state or rate_before != rates[zone]:
                ready, not_ready = counts[zone]
                changes.append(
                    ZoneChange(zone, state, before, ready + not_ready, not_ready, rates[zone], rate_before)
                )
            if rate_before != rates[zone]:
                self.buckets[zone] = TokenBucket(rates[zone])
        for gone in set(self.states) - set(states):
            self.buckets.pop(gone, None)
        self.states, self.rates = states, rates
        return changes

    def take(self, zone: str, now: float) -> bool:
        """Whether one more node of `zone` may begin to be evicted now."""
        bucket = self.buckets.get(zone)
        return bucket is not None and bucket.take(now)

    def wait(self, zone: str, now: float) -> float:
        bucket = self.buckets.get(zone)
        return math.inf if bucket is None else bucket.wait(now)
