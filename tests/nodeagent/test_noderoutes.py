"""Which nodes get a route, and what turns the routes there are into the ones wanted (pure)."""

from __future__ import annotations

import pytest

from bus.meta import ObjectMeta
from bus.resources import Node
from bus.resources.cluster import NodeAddress, NodeSpec, NodeStatus
from nodeagent.network.noderoutes import Changes, Peer, changes, peer_of, peers, wanted
from nodeagent.network.routetable import Reach, Route

CLUSTER = "10.244.0.0/16"


def node(name: str, cidr: str = "", *addresses: tuple[str, str], cidrs: tuple[str, ...] = ()) -> Node:
    return Node(
        metadata=ObjectMeta(name=name),
        spec=NodeSpec(pod_cidr=cidr, pod_cidrs=list(cidrs)),
        status=NodeStatus(addresses=[NodeAddress(type=t, address=a) for t, a in addresses]),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            node("a", "10.244.1.0/24", ("InternalIP", "192.168.5.2")),
            Peer("a", "10.244.1.0/24", "192.168.5.2"),
        ),
        (
            node("a", "", ("InternalIP", "192.168.5.2"), cidrs=("10.244.1.0/24",)),
            Peer("a", "10.244.1.0/24", "192.168.5.2"),
        ),
        (node("a", "10.244.1.0/24"), None),  # no address yet
        (node("a", "", ("InternalIP", "192.168.5.2")), None),  # no pod CIDR yet
        (node("a", "10.244.1.0/24", ("ExternalIP", "203.0.113.4")), None),  # only an InternalIP counts
        (
            node("a", "10.244.1.0/24", ("InternalIP", "fd00::2"), ("InternalIP", "192.168.5.2")),
            Peer("a", "10.244.1.0/24", "192.168.5.2"),
        ),
        (node("a", "10.244.1.0/33", ("InternalIP", "192.168.5.2")), None),  # nonsense is skipped
        (node("a", "fd00:1::/64", ("InternalIP", "192.168.5.2")), None),
    ],
)
def test_a_peer_is_a_node_with_a_pod_cidr_and_an_internal_ipv4(given: Node, expected: Peer | None) -> None:
    assert peer_of(given) == expected


def test_peers_are_the_other_nodes_inside_the_cluster_cidr_without_overlaps() -> None:
    nodes = [
        node("me", "10.244.0.0/24", ("InternalIP", "192.168.5.1")),
        node("b", "10.244.2.0/24", ("InternalIP", "192.168.5.3")),
        node("a", "10.244.1.0/24", ("InternalIP", "192.168.5.2")),
        node("c", "10.245.1.0/24", ("InternalIP", "192.168.5.4")),  # another cluster's CIDR
        node("d", "10.244.0.0/25", ("InternalIP", "192.168.5.5")),  # inside mine
        node("e", "10.244.2.0/24", ("InternalIP", "192.168.5.6")),  # b's, and b comes first
        node("f", "", ("InternalIP", "192.168.5.7")),
    ]
    assert peers(nodes, own="me", own_cidr="10.244.0.0/24", cluster_cidr=CLUSTER) == [
        Peer("a", "10.244.1.0/24", "192.168.5.2"),
        Peer("b", "10.244.2.0/24", "192.168.5.3"),
    ]


def test_only_peers_on_link_are_routed() -> None:
    found = [
        Peer("a", "10.244.1.0/24", "192.168.5.2"),
        Peer("b", "10.244.2.0/24", "127.0.0.12"),
        Peer("c", "10.244.3.0/24", "10.9.0.4"),
        Peer("d", "10.244.4.0/24", "10.8.0.4"),
        Peer("e", "10.244.5.0/24", "10.7.0.4"),  # not looked up: unreachable
    ]
    reached = {
        "192.168.5.2": (Reach.ON_LINK, 3),
        "127.0.0.12": (Reach.LOCAL, 1),
        "10.9.0.4": (Reach.GATEWAY, 3),
        "10.8.0.4": (Reach.UNREACHABLE, 0),
    }
    assert wanted(found, reached) == {"10.244.1.0/24": Route("10.244.1.0/24", "192.168.5.2", 3)}


A = Route("10.244.1.0/24", "192.168.5.2", 3)
B = Route("10.244.2.0/24", "192.168.5.3", 3)
B_MOVED = Route("10.244.2.0/24", "192.168.5.9", 3)
C = Route("10.244.3.0/24", "192.168.5.4", 3)


@pytest.mark.parametrize(
    ("want", "have", "expected"),
    [
        ([], [], Changes([], [], [])),
        ([A, B], [], Changes([A, B], [], [])),
        ([A, B], [A, B], Changes([], [], [])),
        ([A], [A, B], Changes([], [], [B])),
        ([A, B_MOVED], [A, B], Changes([], [B_MOVED], [])),
        ([C], [A], Changes([C], [], [A])),
        ([A], [Route(A.dst, A.gateway, 4)], Changes([], [A], [])),  # another interface now
    ],
)
def test_changes_turn_the_routes_there_are_into_the_ones_wanted(
    want: list[Route], have: list[Route], expected: Changes
) -> None:
    found = changes({r.dst: r for r in want}, {r.dst: r for r in have})
    assert found == expected
    assert bool(found) == bool(expected.add or expected.replace or expected.delete)
