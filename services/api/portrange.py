"""The nodePort range's arithmetic: which ports may be nodePorts, and in which order a free one
is looked for. Pure: the store is services/api/nodeports.py's business.

Kubernetes' `--service-node-port-range` (30000-32767 by default, below Linux's ephemeral ports,
32768 and up, so a nodePort never meets a connection's local port). Kubernetes cuts this range
in two bands as it does the service CIDR (KEP-3668): the lower `min(max(16, size/32), 128)`
ports are where a random allocation goes only once the upper band is full, so that ports
people choose themselves are rarely taken by chance. Within a band the search starts at a
random offset and goes up, wrapping around, so that API replicas racing for ports seldom try
the same one.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from bus.validation.networking import node_port_range

_BAND_MIN, _BAND_MAX, _BAND_STEP = 16, 128, 32


@dataclass(frozen=True)
class NodePortRange:
    low: int
    high: int

    @classmethod
    def parse(cls, text: str) -> NodePortRange:
        """The range a `--service-node-port-range` names (`30000-32767`); ValueError saying
        what is wrong with it."""
        return cls(*node_port_range(text))

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"

    @property
    def size(self) -> int:
        return self.high - self.low + 1

    @property
    def band(self) -> int:
        """How many ports at the bottom of the range random allocations leave for last
        (Kubernetes' `calculateRangeOffset` for ports)."""
        if self.size < _BAND_MIN:
            return 0
        return min(max(_BAND_MIN, self.size // _BAND_STEP), _BAND_MAX)

    def refusal(self, port: int) -> str:
        """Why `port` cannot be a nodePort of this range ("" when it can), in the words of
        Kubernetes' allocator."""
        if self.low <= port <= self.high:
            return ""
        return f"provided port is not in the valid range. The range of valid ports is {self}"

    def candidates(self, rng: random.Random) -> Iterator[int]:
        """Every port of the range once: the upper band from a random offset, wrapping around,
        then the lower band the same way."""
        for start, count in ((self.band, self.size - self.band), (0, self.band)):
            if count <= 0:
                continue
            offset = rng.randrange(count)
            for i in range(count):
                yield self.low + start + (offset + i) % count
