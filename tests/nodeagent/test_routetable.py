"""The routes to other nodes against the real kernel (root only), in a namespace of the test's own:
a route for a peer on-link and none for the others, routes of others left alone, and ours
corrected by a later sync (as by a restarted agent, which remembers nothing)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute, netns

from nodeagent.network.routetable import PROTO
from tests.netns import PREFIX, remove_namespace, sweep

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

REPO = Path(__file__).resolve().parents[2]
CLUSTER = "10.244.0.0/16"
STATIC = 4  # `proto static`: what an operator's `ip route add` makes

SYNC = """
import json, sys
from nodeagent.network.noderoutes import Peer, sync_kernel
peers = [Peer(*p) for p in json.loads(sys.argv[1])]
reached, blocked = sync_kernel(peers, cluster_cidr=sys.argv[2])
print(json.dumps({"reached": {k: v.value for k, v in reached.items()}, "blocked": [r.dst for r in blocked]}))
"""


@pytest.fixture
def host() -> Iterator[str]:
    """A namespace with `eth0` (a veth whose peer stays there) on 192.168.77.2/24, a router at
    .254 to 10.9.0.0/16, and, already there, a route of someone else's and two of our protocol:
    a stale one inside the cluster CIDR and one inside another cluster's."""
    sweep()
    name = f"{PREFIX}-{os.getpid()}-{secrets.token_hex(3)}-rt"
    netns.create(name)
    try:
        with IPRoute(netns=name) as ipr:
            ipr.link("add", ifname="eth0", kind="veth", peer="wire")  # no dummy module here
            (wire,) = ipr.link_lookup(ifname="wire")
            ipr.link("set", index=wire, state="up")
            (eth0,) = ipr.link_lookup(ifname="eth0")
            ipr.addr("add", index=eth0, address="192.168.77.2", prefixlen=24)
            ipr.link("set", index=eth0, state="up")
            ipr.route("add", dst="10.9.0.0/16", gateway="192.168.77.254")
            ipr.route("add", dst="10.244.9.0/24", gateway="192.168.77.50", proto=STATIC)
            ipr.route("add", dst="10.244.4.0/24", gateway="192.168.77.60", proto=PROTO)
            ipr.route("add", dst="10.245.4.0/24", gateway="192.168.77.70", proto=PROTO)
        yield name
    finally:
        remove_namespace(name)


def sync(host: str, peers: list[tuple[str, str, str]]) -> dict[str, object]:
    done = subprocess.run(
        ["ip", "netns", "exec", host, sys.executable, "-c", SYNC, json.dumps(peers), CLUSTER],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def routes(host: str) -> dict[str, tuple[str, int]]:
    """Destination -> (gateway, protocol) of the routes through a gateway."""
    with IPRoute(netns=host) as ipr:
        return {
            f"{r.get_attr('RTA_DST')}/{r['dst_len']}": (r.get_attr("RTA_GATEWAY"), r["proto"])
            for r in ipr.get_routes(family=2, table=254)
            if r.get_attr("RTA_GATEWAY") and r.get_attr("RTA_DST")
        }


def test_peers_on_link_get_a_route_and_nothing_else_is_touched(host: str) -> None:
    peers = [
        ("on-link", "10.244.1.0/24", "192.168.77.3"),
        ("same-host", "10.244.2.0/24", "192.168.77.2"),
        ("routed", "10.244.3.0/24", "10.9.0.4"),
        ("nowhere", "10.244.5.0/24", "10.8.0.4"),
        ("held", "10.244.9.0/24", "192.168.77.5"),
    ]
    result = sync(host, peers)
    assert result == {
        "reached": {
            "on-link": "on-link",
            "same-host": "local",
            "routed": "through a gateway",
            "nowhere": "unreachable",
            "held": "on-link",
        },
        "blocked": ["10.244.9.0/24"],
    }
    assert routes(host) == {
        "10.9.0.0/16": ("192.168.77.254", STATIC),  # the namespace's way to a router
        "10.244.1.0/24": ("192.168.77.3", PROTO),  # ours, new
        "10.244.9.0/24": ("192.168.77.50", STATIC),  # someone else's: left as it was
        "10.245.4.0/24": ("192.168.77.70", PROTO),  # another cluster's: left as it was
    }  # and ours to 10.244.4.0/24, for a node that is no more, gone


def test_a_later_sync_corrects_our_routes_and_removes_those_of_nodes_gone(host: str) -> None:
    sync(host, [("a", "10.244.1.0/24", "192.168.77.3"), ("b", "10.244.2.0/24", "192.168.77.4")])
    sync(host, [("a", "10.244.1.0/24", "192.168.77.3"), ("b", "10.244.2.0/24", "192.168.77.4")])  # again
    ours = {dst: via for dst, (via, proto) in routes(host).items() if proto == PROTO}
    assert ours == {
        "10.244.1.0/24": "192.168.77.3",
        "10.244.2.0/24": "192.168.77.4",
        "10.245.4.0/24": "192.168.77.70",
    }
    sync(host, [("b", "10.244.2.0/24", "192.168.77.8")])  # a gone, b at a new address
    ours = {dst: via for dst, (via, proto) in routes(host).items() if proto == PROTO}
    assert ours == {"10.244.2.0/24": "192.168.77.8", "10.245.4.0/24": "192.168.77.70"}
    sync(host, [])
    assert routes(host) == {
        "10.9.0.0/16": ("192.168.77.254", STATIC),
        "10.244.9.0/24": ("192.168.77.50", STATIC),
        "10.245.4.0/24": ("192.168.77.70", PROTO),
    }
