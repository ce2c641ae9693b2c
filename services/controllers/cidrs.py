"""Carving a cluster CIDR into per-node pod CIDRs: pure arithmetic, no I/O.

The cluster CIDR (`10.244.0.0/16`) is cut into equal subnets of the node mask size (`/24`),
numbered from its start. A node is given the lowest subnet no node holds, so the choice is
deterministic and the same occupancy always yields the same answer. Occupancy is whatever the
caller says it is (the node IPAM controller rebuilds it from the Nodes' specs every time): a CIDR
of another size marks every subnet it overlaps, and one outside the cluster CIDR marks none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network

MAX_SUBNET_BITS = 16  # Kubernetes' limit: node mask size at most 16 bits longer than the cluster's


class CIDRsExhausted(Exception):
    """Every subnet of the cluster CIDR is held by some node."""


@dataclass(frozen=True)
class NodeCIDRs:
    cluster: IPv4Network
    mask: int

    def __post_init__(self) -> None:
        if not self.cluster.prefixlen <= self.mask <= 32:
            raise ValueError(
                f"node CIDR mask size /{self.mask} must be between the cluster CIDR's "
                f"(/{self.cluster.prefixlen}) and /32"
            )
        if self.mask - self.cluster.prefixlen > MAX_SUBNET_BITS:
            raise ValueError(
                f"node CIDR mask size /{self.mask} is more than {MAX_SUBNET_BITS} bits longer than "
                f"the cluster CIDR's (/{self.cluster.prefixlen})"
            )

    @property
    def size(self) -> int:
        """How many node subnets the cluster CIDR holds."""
        return 1 << (self.mask - self.cluster.prefixlen)

    def subnet(self, index: int) -> IPv4Network:
        first = int(self.cluster.network_address) + (index << (32 - self.mask))
        return IPv4Network((first, self.mask))

    def contains(self, cidr: IPv4Network) -> bool:
        return cidr.subnet_of(self.cluster)

    def overlapped(self, cidr: IPv4Network) -> range:
        """The indices of the subnets `cidr` overlaps (none when it lies outside)."""
        if self.cluster.subnet_of(cidr):
            return range(self.size)
        if not self.contains(cidr):
            return range(0)
        base, shift = int(self.cluster.network_address), 32 - self.mask
        first = (int(cidr.network_address) - base) >> shift
        last = (int(cidr.broadcast_address) - base) >> shift
        return range(first, last + 1)

    def lowest_free(self, occupied: Iterable[IPv4Network]) -> IPv4Network:
        """The lowest subnet no CIDR of `occupied` overlaps; `CIDRsExhausted` when none is left."""
        taken: set[int] = set()
        for cidr in occupied:
            taken.update(self.overlapped(cidr))
        for index in range(self.size):
            if index not in taken:
                return self.subnet(index)
        raise CIDRsExhausted(
            f"no /{self.mask} is left in the cluster CIDR {self.cluster}: all {self.size} are allocated"
        )


def parse(text: str) -> IPv4Network | None:
    """The network a stored pod CIDR names (validated by the API; None if it cannot be read)."""
    try:
        return IPv4Network(text, strict=False)
    except ValueError:
        return None
