"""The service CIDR's arithmetic (pure): which addresses may be ClusterIPs, the static band, and
the order in which a free address is looked for."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

import pytest

from services.api.iprange import ServiceRange, static_band


@pytest.mark.parametrize(
    ("text", "first", "last", "size"),
    [
        ("10.96.0.0/16", "10.96.0.1", "10.96.255.254", 65534),
        ("10.97.0.0/29", "10.97.0.1", "10.97.0.6", 6),
        ("192.168.3.0/30", "192.168.3.1", "192.168.3.2", 2),
        ("10.0.0.0/12", "10.0.0.1", "10.15.255.254", 2**20 - 2),
    ],
)
def test_parse(text: str, first: str, last: str, size: int) -> None:
    parsed = ServiceRange.parse(text)
    assert (str(parsed.first), str(parsed.last), parsed.size) == (first, last, size)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("10.96.0.1/16", "has host bits set"),
        ("10.96.0.0", "no prefix length"),
        ("10.96.0.0/31", "between /12 and /30"),
        ("10.0.0.0/8", "between /12 and /30"),
        ("fd00::/112", "not an IPv4 network"),
        ("ten", "not an IPv4 network"),
    ],
)
def test_parse_refuses(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        ServiceRange.parse(text)


@pytest.mark.parametrize(
    ("cidr", "band"),
    # Kubernetes' calculateRangeOffset: min(max(16, size/16), 256), none for 16 addresses or fewer.
    [
        ("10.0.0.0/30", 0),
        ("10.0.0.0/28", 0),
        ("10.0.0.0/27", 16),
        ("10.0.0.0/24", 16),
        ("10.0.0.0/20", 256),
        ("10.96.0.0/16", 256),
        ("10.0.0.0/22", 64),
    ],
)
def test_static_band(cidr: str, band: int) -> None:
    assert static_band(IPv4Network(cidr)) == band


IN_RANGE = "provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/16"


@pytest.mark.parametrize(
    ("address", "refusal"),
    [
        ("10.96.0.1", ""),
        ("10.96.0.10", ""),
        ("10.96.255.254", ""),
        ("10.97.0.1", IN_RANGE),
        ("192.168.0.1", IN_RANGE),
        ("10.96.0.0", f"{IN_RANGE} (but for its network address and its broadcast address)"),
        ("10.96.255.255", f"{IN_RANGE} (but for its network address and its broadcast address)"),
    ],
)
def test_refusal(address: str, refusal: str) -> None:
    assert ServiceRange.parse("10.96.0.0/16").refusal(IPv4Address(address)) == refusal


@pytest.mark.parametrize(
    "cidr", ["10.97.0.0/30", "10.97.0.0/29", "10.97.0.0/28", "10.97.0.0/27", "10.97.0.0/24"]
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_candidates_cover_the_range_once_upper_band_first(cidr: str, seed: int) -> None:
    served = ServiceRange.parse(cidr)
    order = list(served.candidates(random.Random(seed)))
    assert sorted(order) == [served.first + i for i in range(served.size)]  # each usable address once
    upper = order[: served.size - served.band]
    assert all(address >= served.first + served.band for address in upper)


def test_candidates_start_at_random() -> None:
    served = ServiceRange.parse("10.96.0.0/16")
    starts = {next(served.candidates(random.Random(seed))) for seed in range(20)}
    assert len(starts) > 15
    assert all(start >= served.first + 256 for start in starts)  # never the static band first


def test_candidates_wrap_around() -> None:
    served = ServiceRange.parse("10.97.0.0/29")  # 6 addresses, no static band
    order = [int(a) - int(served.first) for a in served.candidates(random.Random(3))]
    start = order[0]
    assert order == [(start + i) % 6 for i in range(6)]
