"""Separate hosts on one machine: network namespaces joined by veth pairs to a bridge.

A `Network` is one "bus host" namespace holding a bridge, and any number of "node host"
namespaces, each with one address on an `eth0` whose peer is a port of that bridge. Traffic from
a node to the bus therefore really crosses a link, and `cut(node)` takes that link down (the
bridge's port goes down, as a pulled cable or a dead switch port: the node sees no carrier and
its packets go nowhere; nothing is reset). The test process itself reaches the bridge through
one more veth pair whose outer end is in the machine's own namespace, as an operator's laptop
on the same network would.

    with Network.created() as net:
        node = net.add_node()
        proc = node.popen(["sleep", "60"], log=path)   # runs inside the node's namespace
        net.cut(node); net.heal(node)

Addresses are 10.250.X.0/24 (a private block, used only inside namespaces made here): the bus
host is .1, nodes .10 and up, the machine's end of its link .254. X is one that no address of
the machine uses yet.

Everything is named with the prefix `sth-<pid>-<tag>` (namespaces) or `sth<tag>` (the one link
in the machine's namespace), so that `sweep()` can remove what a crashed run left behind: the
namespaces whose creating process is gone, the processes still inside them, and links without
a namespace. `Network.created()` sweeps first and removes everything it made on every exit path.

Netlink goes through pyroute2. Its synchronous `IPRoute` runs an event loop of its own, so
call these methods from a thread (`asyncio.to_thread`) inside async tests.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import IPRoute, netns

PREFIX = "sth"
BLOCK = "10.250"
BRIDGE = "br0"
_OURS = re.compile(rf"^{PREFIX}-(\d+)-([0-9a-f]{{6}})-")
_OUR_LINK = re.compile(rf"^{PREFIX}([0-9a-f]{{6}})$")
NETNS_DIR = Path("/run/netns")


@dataclass
class Host:
    """One namespace with one address: the bus host or a node host."""

    name: str  # what the test calls it (bus, n0, ...)
    netns: str
    address: str
    port: str = ""  # the bridge's port (a veth in the bus namespace) leading to it; "" for the bus

    def command(self, argv: list[str]) -> list[str]:
        """`argv` to run inside this host's namespace (ip execs it: the pid is the program's)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def popen(
        self, argv: list[str], *, log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(
                self.command(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
            )

    def inode(self) -> int:
        """The namespace's identity, to tell which processes run inside it."""
        return os.stat(NETNS_DIR / self.netns).st_ino

    def pids(self) -> list[int]:
        """Every process inside this host's namespace (the pods of the process runtime too)."""
        return pids_in(self.netns)


@dataclass
class Network:
    tag: str
    subnet: int  # X of 10.250.X.0/24
    bus: Host
    outer_link: str  # our end, in the machine's namespace
    nodes: list[Host] = field(default_factory=list)

    @classmethod
    @contextlib.contextmanager
    def created(cls) -> Iterator[Network]:
        sweep()
        tag = secrets.token_hex(3)
        subnet = _free_subnet()
        bus = Host("bus", f"{PREFIX}-{os.getpid()}-{tag}-bus", f"{BLOCK}.{subnet}.1")
        net = cls(tag, subnet, bus, f"{PREFIX}{tag}")
        try:
            net._make_bus()
            yield net
        finally:
            net.destroy()

    def _make_bus(self) -> None:
        netns.create(self.bus.netns)
        with IPRoute(netns=self.bus.netns) as ipr:
            _up(ipr, "lo")
            ipr.link("add", ifname=BRIDGE, kind="bridge")
            bridge = _index(ipr, BRIDGE)
            ipr.addr("add", index=bridge, address=self.bus.address, prefixlen=24)
            ipr.link("set", index=bridge, state="up")
        # The machine's own way in (for the test's connections): made from our side, so the
        # pair exists at once with its peer inside the bus namespace.
        with IPRoute() as ipr:
            ipr.link(
                "add",
                ifname=self.outer_link,
                kind="veth",
                peer={"ifname": "outer", "net_ns_fd": self.bus.netns},
            )
            outer = _index(ipr, self.outer_link)
            ipr.addr("add", index=outer, address=f"{BLOCK}.{self.subnet}.254", prefixlen=24)
            ipr.link("set", index=outer, state="up")
        self._plug("outer")

    def _plug(self, port: str) -> None:
        with IPRoute(netns=self.bus.netns) as ipr:
            ipr.link("set", index=_index(ipr, port), master=_index(ipr, BRIDGE), state="up")

    def add_node(self, name: str = "") -> Host:
        """A new node host on the bridge."""
        number = len(self.nodes)
        name = name or f"n{number}"
        host = Host(
            name,
            f"{PREFIX}-{os.getpid()}-{self.tag}-{name}",
            f"{BLOCK}.{self.subnet}.{10 + number}",
            port=f"p{number}",
        )
        netns.create(host.netns)
        self.nodes.append(host)
        with IPRoute(netns=self.bus.netns) as ipr:
            ipr.link("add", ifname=host.port, kind="veth", peer={"ifname": "eth0", "net_ns_fd": host.netns})
        with IPRoute(netns=host.netns) as ipr:
            _up(ipr, "lo")
            eth0 = _index(ipr, "eth0")
            ipr.addr("add", index=eth0, address=host.address, prefixlen=24)
            ipr.link("set", index=eth0, state="up")
        self._plug(host.port)
        return host

    def cut(self, node: Host) -> None:
        """The node's link goes down at the bridge: its traffic to anyone goes nowhere."""
        self._port_state(node, "down")

    def heal(self, node: Host) -> None:
        self._port_state(node, "up")

    def _port_state(self, node: Host, state: str) -> None:
        with IPRoute(netns=self.bus.netns) as ipr:
            ipr.link("set", index=_index(ipr, node.port), state=state)

    def destroy(self) -> None:
        """Kill every process inside our namespaces, then remove them and our link."""
        for host in [*self.nodes, self.bus]:
            if (NETNS_DIR / host.netns).exists():
                remove_namespace(host.netns)
        _delete_link(self.outer_link)


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LookupError(f"no link {ifname}")
    return int(found[0])


def _up(ipr: IPRoute, ifname: str) -> None:
    ipr.link("set", index=_index(ipr, ifname), state="up")


def _delete_link(ifname: str) -> None:
    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=ifname):
            with contextlib.suppress(Exception):  # gone with its namespace's destruction meanwhile
                ipr.link("del", index=index)


def _free_subnet() -> int:
    """An X of 10.250.X.0/24 that no address in the machine's namespace is in (another run's)."""
    with IPRoute() as ipr:
        used = {
            ipaddress.ip_address(addr.get_attr("IFA_ADDRESS"))
            for addr in ipr.get_addr(family=2)
            if addr.get_attr("IFA_ADDRESS")
        }
    taken = {int(str(a).split(".")[2]) for a in used if str(a).startswith(f"{BLOCK}.")}
    free = [x for x in range(1, 255) if x not in taken]
    if not free:
        raise RuntimeError(f"every {BLOCK}.X.0/24 is in use")
    return free[secrets.randbelow(len(free))]


def pids_in(name: str) -> list[int]:
    try:
        inode = os.stat(NETNS_DIR / name).st_ino
    except FileNotFoundError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                    pids.append(int(entry))
    return pids


def remove_namespace(name: str, *, within: float = 10.0) -> None:
    """SIGKILL whatever runs inside the namespace (until nothing does: a dying process's child
    may have been forked meanwhile), then remove it; the kernel then deletes its links, and
    with each veth its peer."""
    deadline = time.monotonic() + within
    while (pids := pids_in(name)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)  # the kernel's reaping of what we just killed; nothing to wait on
    with contextlib.suppress(FileNotFoundError):
        netns.remove(name)


def sweep() -> set[str]:
    """Remove what runs that crashed left: our namespaces whose creating process is gone (and
    what still runs inside them), and our links in the machine's namespace without a bus. The
    tags of the runs still alive."""
    live_tags = set()
    for name in netns.listnetns():
        match = _OURS.match(name)
        if match is None:
            continue
        if _alive(int(match.group(1))):
            live_tags.add(match.group(2))
        else:
            remove_namespace(name)
    with IPRoute() as ipr:
        links = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    for ifname in links:
        match = _OUR_LINK.match(ifname or "")
        if match is not None and match.group(1) not in live_tags:
            _delete_link(ifname)
    return live_tags


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
