"""The service CIDR's arithmetic: which addresses may be ClusterIPs, and in which order a free one
is looked for. Pure: the store is services/api/clusterips.py's business.

Kubernetes' allocator, reproduced: the network and broadcast addresses are never handed out;
the range is cut in two bands (KEP-3070) so that addresses people choose themselves (a DNS
server at `10.96.0.10`) are rarely taken by chance: the lower band, `min(max(16, size/16), 256)`
addresses (none in a range of 16 or fewer), is where a random allocation goes only once the
upper band is full. Within a band the search starts at a random offset and goes up, wrapping
around, so that allocations spread over the range and API replicas racing for addresses seldom
try the same one.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

DEFAULT_SERVICE_CIDR = "10.96.0.0/16"
# Kubernetes refuses a service range larger than a /12 (the bitmap it kept had to stay small);
# below a /30 nothing is left once the network and broadcast addresses are set aside.
LARGEST_PREFIX, SMALLEST_PREFIX = 12, 30
_BAND_MIN, _BAND_MAX, _BAND_STEP = 16, 256, 16


def static_band(cidr: IPv4Network) -> int:
    """How many addresses at the bottom of the range random allocations leave for last
    (Kubernetes' `calculateRangeOffset`)."""
    size = cidr.num_addresses
    if size <= _BAND_MIN:
        return 0
    return min(max(_BAND_MIN, size // _BAND_STEP), _BAND_MAX)


@dataclass(frozen=True)
class ServiceRange:
    cidr: IPv4Network
    first: IPv4Address = field(init=False)
    size: int = field(init=False)  # addresses that may be handed out
    band: int = field(init=False)  # the lower band's size (static_band)

    def __post_init__(self) -> None:
        object.__setattr__(self, "first", self.cidr.network_address + 1)
        object.__setattr__(self, "size", self.cidr.num_addresses - 2)
        object.__setattr__(self, "band", static_band(self.cidr))

    @classmethod
    def parse(cls, text: str) -> ServiceRange:
        """The range a `--service-cidr` names; ValueError saying what is wrong with it."""
        try:
            cidr = IPv4Network(text, strict=True)
        except ValueError as err:
            raise ValueError(
                f"{text!r} is not an IPv4 network in CIDR notation (e.g. 10.96.0.0/16): {err}"
            ) from None
        if "/" not in text:
            raise ValueError(f"{text!r} has no prefix length (e.g. 10.96.0.0/16)")
        if not LARGEST_PREFIX <= cidr.prefixlen <= SMALLEST_PREFIX:
            raise ValueError(
                f"{text!r}: the prefix length must be between /{LARGEST_PREFIX} and /{SMALLEST_PREFIX}"
            )
        return cls(cidr)

    @property
    def last(self) -> IPv4Address:
        return self.cidr.broadcast_address - 1

    def refusal(self, address: IPv4Address) -> str:
        """Why `address` cannot be a ClusterIP of this range ("" when it can), in the words of
        Kubernetes' allocator."""
        message = f"provided IP is not in the valid range. The range of valid IPs is {self.cidr}"
        if address not in self.cidr:
            return message
        if address in (self.cidr.network_address, self.cidr.broadcast_address):
            return f"{message} (but for its network address and its broadcast address)"
        return ""

    def candidates(self, rng: random.Random) -> Iterator[IPv4Address]:
        """Every address of the range once: the upper band from a random offset, wrapping
        around, then the lower band the same way."""
        for start, count in ((self.band, self.size - self.band), (0, self.band)):
            if count <= 0:
                continue
            offset = rng.randrange(count)
            for i in range(count):
                yield self.first + start + (offset + i) % count
