"""The separate-hosts harness itself (tests/netns.py): a node reaches the bus host across its link
and nothing else, a cut stops its traffic and a heal lets it through again, and nothing it made
outlives it, even after a crash (the sweep)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyroute2 import IPRoute, netns

from tests.netns import PREFIX, Host, Network, pids_in, sweep

SERVE = "import socket,sys; s=socket.create_server(('0.0.0.0', 7000)); print('up', flush=True); [s.accept()[0].close() for _ in iter(int, 1)]"  # noqa: E501


def reaches(host: Host, address: str, *, within: float = 2.0) -> bool:
    """Whether a TCP connection from inside `host` to address:7000 is accepted within `within`."""
    probe = f"import socket; socket.create_connection(('{address}', 7000), timeout={within}).close()"
    return subprocess.run(host.command([sys.executable, "-c", probe]), capture_output=True).returncode == 0


def links() -> set[str]:
    with IPRoute() as ipr:
        return {str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()}


def started(argv: list[str]) -> subprocess.Popen[bytes]:
    """A process that says "up" once ready; returned once it has said so."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    return proc


def test_a_cut_stops_a_nodes_traffic_and_a_heal_lets_it_through(tmp_path: Path) -> None:
    with Network.created() as net:
        first, second = net.add_node(), net.add_node()
        server = started(net.bus.command([sys.executable, "-u", "-c", SERVE]))
        assert reaches(first, net.bus.address) and reaches(second, net.bus.address)
        assert not reaches(first, "127.0.0.1", within=0.5), "a node has a loopback of its own"

        net.cut(first)
        assert not reaches(first, net.bus.address, within=1.0)
        assert reaches(second, net.bus.address), "a cut is one node's"
        net.heal(first)
        assert reaches(first, net.bus.address, within=5.0)
        assert server.poll() is None
    server.wait()
    assert server.stdout is not None
    server.stdout.close()


def test_nothing_outlives_the_network(tmp_path: Path) -> None:
    with Network.created() as net:
        node = net.add_node()
        sleeper = started(node.command(["sh", "-c", "echo up; exec sleep 600"]))
        made = [net.bus.netns, node.netns]
        assert sleeper.pid in node.pids()
    assert sleeper.wait(10) == -9
    assert sleeper.stdout is not None
    sleeper.stdout.close()
    assert not set(made) & set(netns.listnetns())
    assert net.outer_link not in links()


def test_a_failure_inside_still_removes_everything(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), Network.created() as net:
        net.add_node()
        made = [net.bus.netns, net.nodes[0].netns]
        raise RuntimeError("a test failed")
    assert not set(made) & set(netns.listnetns())
    assert net.outer_link not in links()


def test_the_sweep_removes_what_a_crashed_run_left(tmp_path: Path) -> None:
    # A run that crashed: its process is gone, its namespace and what ran inside it are not.
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = f"{PREFIX}-{dead.pid}-abcdef-n0"
    netns.create(left)
    try:
        orphan = started(["ip", "netns", "exec", left, "sh", "-c", "echo up; exec sleep 600"])
        assert orphan.pid in pids_in(left)
        sweep()
        assert orphan.wait(10) == -9
        assert orphan.stdout is not None
        orphan.stdout.close()
        assert left not in netns.listnetns()
    finally:
        if left in netns.listnetns():
            netns.remove(left)
    # A live run's namespaces are left alone.
    mine = f"{PREFIX}-{os.getpid()}-fedcba-n0"
    netns.create(mine)
    try:
        sweep()
        assert mine in netns.listnetns()
    finally:
        netns.remove(mine)
