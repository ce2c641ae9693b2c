"""Netlink work of the pod network against the real kernel (root only): a pod namespace plugged
into a bridge, found again, and removed; and the agent surviving the children pyroute2 forks."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

from nodeagent.network import links

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture
def scratch() -> Iterator[tuple[str, str, str]]:
    """A bridge, a veth name and a namespace of this test's own, removed afterwards."""
    tag = secrets.token_hex(3)
    bridge, veth, netns = f"tstb{tag}", f"tstv{tag}", f"steer-test-{tag}"
    try:
        yield bridge, veth, netns
    finally:
        links.delete_link(veth)
        links.delete_link(bridge)
        links.remove_netns(netns)


def test_a_pod_namespace_is_plugged_in_found_again_and_made_again_after_a_crash(
    scratch: tuple[str, str, str],
) -> None:
    bridge, veth, netns = scratch
    links.ensure_bridge(bridge, "10.251.9.1", 24)  # a pod CIDR the node had in an earlier life
    links.ensure_bridge(bridge, "10.251.7.1", 24)
    links.ensure_bridge(bridge, "10.251.7.1", 24)  # idempotent
    with IPRoute() as ipr:
        held = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=2, label=bridge)]
    assert held == ["10.251.7.1"]
    links.create_netns(netns)
    assert links.pod_address(netns) is None
    plug = dict(bridge=bridge, veth=veth, namespace=netns, address="10.251.7.5", gateway="10.251.7.1")
    links.plug_pod(**plug, routes=["10.251.0.0/16"])
    assert links.pod_address(netns) == "10.251.7.5"
    links.plug_pod(**plug, routes=["10.251.0.0/16"])  # a second run after an interrupted one
    assert links.pod_address(netns) == "10.251.7.5"
    with IPRoute(netns=netns) as ipr:
        routes = {r.get_attr("RTA_DST") for r in ipr.get_routes(family=2) if r.get_attr("RTA_DST")}
        default = [r for r in ipr.get_routes(family=2) if r["dst_len"] == 0 and r.get_attr("RTA_GATEWAY")]
    assert {"10.251.7.1", "10.251.0.0"} <= routes
    assert not default  # no route off the machine
    with IPRoute() as ipr:
        (port,) = ipr.get_links(ifname=veth)
        (br,) = ipr.get_links(ifname=bridge)
    assert port.get_attr("IFLA_MASTER") == br["index"]
    links.remove_netns(netns)
    assert netns not in links.netns_names()


async def test_a_namespace_child_of_pyroute2_does_not_stop_the_agent(scratch: tuple[str, str, str]) -> None:
    """pyroute2 forks a child to work in a namespace and stops it with SIGTERM; the child used
    to write that SIGTERM into the inherited asyncio wake-up socket, and the agent's own loop
    took it for its own and stopped (its pods were never set up)."""
    _, _, netns = scratch
    loop = asyncio.get_running_loop()
    terminated = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, terminated.set)
    try:
        await asyncio.to_thread(links.create_netns, netns)
        for _ in range(3):
            assert await asyncio.to_thread(links.pod_address, netns) is None  # IPRoute(netns=...): a child
        for _ in range(10):  # let the loop read whatever reached its wake-up socket
            await asyncio.sleep(0)
        assert not terminated.is_set()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
