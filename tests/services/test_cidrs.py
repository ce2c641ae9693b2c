"""Carving the cluster CIDR into node subnets: sizes, lowest-free choice, overlaps, exhaustion."""

from __future__ import annotations

import re
from ipaddress import IPv4Network

import pytest

from services.controllers.cidrs import CIDRsExhausted, NodeCIDRs, parse


def cidrs(cluster: str = "10.244.0.0/16", mask: int = 24) -> NodeCIDRs:
    return NodeCIDRs(IPv4Network(cluster), mask)


def nets(*texts: str) -> list[IPv4Network]:
    return [IPv4Network(t) for t in texts]


@pytest.mark.parametrize(
    ("cluster", "mask", "size", "first", "last"),
    [
        ("10.244.0.0/16", 24, 256, "10.244.0.0/24", "10.244.255.0/24"),
        ("10.244.0.0/16", 16, 1, "10.244.0.0/16", "10.244.0.0/16"),
        ("10.0.0.0/8", 24, 65536, "10.0.0.0/24", "10.255.255.0/24"),
        ("10.250.0.0/30", 31, 2, "10.250.0.0/31", "10.250.0.2/31"),
        ("10.250.0.0/30", 32, 4, "10.250.0.0/32", "10.250.0.3/32"),
    ],
)
def test_subnets(cluster: str, mask: int, size: int, first: str, last: str) -> None:
    carved = cidrs(cluster, mask)
    assert carved.size == size
    assert carved.subnet(0) == IPv4Network(first)
    assert carved.subnet(size - 1) == IPv4Network(last)


@pytest.mark.parametrize(
    ("cluster", "mask", "error"),
    [
        ("10.244.0.0/16", 15, "between the cluster CIDR's (/16) and /32"),
        ("10.244.0.0/16", 33, "between the cluster CIDR's (/16) and /32"),
        ("10.0.0.0/8", 25, "more than 16 bits longer"),
    ],
)
def test_bad_mask_sizes(cluster: str, mask: int, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        cidrs(cluster, mask)


@pytest.mark.parametrize(
    ("occupied", "expected"),
    [
        ([], "10.244.0.0/24"),
        (["10.244.0.0/24"], "10.244.1.0/24"),
        (["10.244.1.0/24", "10.244.0.0/24"], "10.244.2.0/24"),
        (["10.244.0.0/24", "10.244.2.0/24"], "10.244.1.0/24"),  # a freed hole is filled first
        (["10.244.0.0/23"], "10.244.2.0/24"),  # a larger CIDR holds every subnet it covers
        (["10.244.0.128/25"], "10.244.1.0/24"),  # a smaller one holds the subnet it lies in
        (["10.245.0.0/24", "192.168.0.0/24"], "10.244.0.0/24"),  # outside: holds nothing
        (["10.0.0.0/8"], None),  # covers the whole cluster CIDR
        ([f"10.244.{i}.0/24" for i in range(256)], None),
    ],
)
def test_lowest_free(occupied: list[str], expected: str | None) -> None:
    carved = cidrs()
    if expected is None:
        with pytest.raises(CIDRsExhausted, match=r"no /24 is left in the cluster CIDR 10.244.0.0/16"):
            carved.lowest_free(nets(*occupied))
    else:
        assert carved.lowest_free(nets(*occupied)) == IPv4Network(expected)


@pytest.mark.parametrize(
    ("cidr", "indices", "inside"),
    [
        ("10.244.3.0/24", [3], True),
        ("10.244.4.0/22", [4, 5, 6, 7], True),
        ("10.244.255.7/32", [255], True),
        ("10.244.0.0/16", list(range(256)), True),
        ("10.0.0.0/8", list(range(256)), False),
        ("10.245.0.0/24", [], False),
    ],
)
def test_overlapped(cidr: str, indices: list[int], inside: bool) -> None:
    carved = cidrs()
    assert list(carved.overlapped(IPv4Network(cidr))) == indices
    assert carved.contains(IPv4Network(cidr)) == inside


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.244.1.0/24", IPv4Network("10.244.1.0/24")),
        ("10.244.1.9/24", IPv4Network("10.244.1.0/24")),
        ("x", None),
    ],
)
def test_parse(text: str, expected: IPv4Network | None) -> None:
    assert parse(text) == expected
