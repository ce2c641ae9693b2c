"""A node's pod network in namespaces of the test's own, laid out as docs/networking.md says.

A "node" namespace holds the bridge with the gateway address 10.244.0.1/24 (and a route for the
service CIDR, standing in for a host's default route) and forwards; each
pod namespace has a veth whose node end is a port of the bridge and whose pod end is `eth0` with
`<pod IP>/32`, a link route to the gateway, and 10.244.0.0/16 and 10.96.0.0/16 through it. A pod
can run a TCP server that answers every connection with the pod's name, and a client that dials
an address many times and counts who answered.

Names follow tests/netns.py (`sth-<pid>-<tag>-...`), so its `sweep()` removes what a crashed run
left behind; `PodNet.created()` removes everything it made on every exit path.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from pyroute2 import IPRoute, netns

from tests.netns import PREFIX, remove_namespace, sweep

GATEWAY = "10.244.0.1"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"

SERVER = """
import socket, sys
name, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(128)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(name.encode())
    c.close()
"""

CLIENT = """
import collections, errno, json, socket, sys, time
host, port, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
seen = collections.Counter()
started = time.monotonic()
for _ in range(count):
    try:
        with socket.create_connection((host, port), timeout=timeout) as c:
            data = b""
            while chunk := c.recv(256):
                data += chunk
            seen[data.decode() or "empty"] += 1
    except ConnectionRefusedError:
        seen["refused"] += 1
    except TimeoutError:
        seen["timeout"] += 1
    except OSError as err:
        seen[errno.errorcode.get(err.errno, str(err))] += 1
print(json.dumps({"seen": seen, "seconds": time.monotonic() - started}))
"""


@dataclass
class Pod:
    name: str
    netns: str
    ip: str

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]


@dataclass
class PodNet:
    tag: str
    node: str  # the node's namespace
    bridge: str
    pods: dict[str, Pod] = field(default_factory=dict)
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def node_netns_path(self) -> str:
        return f"/run/netns/{self.node}"

    @classmethod
    @contextlib.contextmanager
    def created(cls) -> Iterator[PodNet]:
        sweep()
        tag = secrets.token_hex(3)
        net = cls(tag, f"{PREFIX}-{os.getpid()}-{tag}-node", f"steer{tag}")
        try:
            net._make_node()
            yield net
        finally:
            net.destroy()

    def _make_node(self) -> None:
        netns.create(self.node)
        with IPRoute(netns=self.node) as ipr:
            ipr.link("set", index=_index(ipr, "lo"), state="up")
            ipr.link("add", ifname=self.bridge, kind="bridge")
            bridge = _index(ipr, self.bridge)
            ipr.addr("add", index=bridge, address=GATEWAY, prefixlen=24)
            ipr.link("set", index=bridge, state="up")
            # What a host's default route does: the node's own processes can dial a ClusterIP
            # (the connect needs a route before the output hook DNATs it).
            ipr.route("add", dst=SERVICE_CIDR, oif=bridge)
        self.sysctl("net.ipv4.ip_forward", 1)
        self.sysctl("net.ipv4.conf.all.send_redirects", 0)
        self.sysctl(f"net.ipv4.conf.{self.bridge}.send_redirects", 0)
        self.sysctl(f"net.ipv4.conf.{self.bridge}.route_localnet", 1)

    def sysctl(self, key: str, value: int) -> None:
        """Set in the node's namespace only (these keys are per namespace)."""
        subprocess.run(
            ["ip", "netns", "exec", self.node, "sysctl", "-qw", f"{key}={value}"], check=True, timeout=10
        )

    def add_pod(self, name: str, ip: str) -> Pod:
        pod = Pod(name, f"{PREFIX}-{os.getpid()}-{self.tag}-{name}", ip)
        netns.create(pod.netns)
        self.pods[name] = pod
        host_end = f"sv{self.tag}{len(self.pods)}"
        with IPRoute(netns=self.node) as ipr:
            ipr.link("add", ifname=host_end, kind="veth", peer={"ifname": "eth0", "net_ns_fd": pod.netns})
            ipr.link("set", index=_index(ipr, host_end), master=_index(ipr, self.bridge), state="up")
            ipr.brport("set", index=_index(ipr, host_end), mode=1)  # hairpin, as links.plug_pod
        with IPRoute(netns=pod.netns) as ipr:
            ipr.link("set", index=_index(ipr, "lo"), state="up")
            eth0 = _index(ipr, "eth0")
            ipr.addr("add", index=eth0, address=ip, prefixlen=32)
            ipr.link("set", index=eth0, state="up")
            ipr.route("add", dst=f"{GATEWAY}/32", oif=eth0, scope=253)  # link scope
            for cidr in (CLUSTER_CIDR, SERVICE_CIDR):
                ipr.route("add", dst=cidr, gateway=GATEWAY, oif=eth0)
        return pod

    def route_in_pod(self, pod: Pod, cidr: str) -> None:
        """One more destination the pod reaches through its gateway (an address of the node)."""
        with IPRoute(netns=pod.netns) as ipr:
            ipr.route("add", dst=cidr, gateway=GATEWAY, oif=_index(ipr, "eth0"))

    def add_node_address(self, address: str) -> None:
        """The node's own address (as a host's eth0 one), on the node namespace's `lo`."""
        with IPRoute(netns=self.node) as ipr:
            ipr.addr("add", index=_index(ipr, "lo"), address=address, prefixlen=32)

    def add_default_route_to_nowhere(self) -> None:
        """A default route out of the node, as a host has, over a veth whose peer is down: what
        takes it goes nowhere (never off this machine)."""
        with IPRoute(netns=self.node) as ipr:
            ipr.link("add", ifname="off", kind="veth", peer="off-peer")
            ipr.link("set", index=_index(ipr, "off"), state="up")
            ipr.route("add", dst="0.0.0.0/0", oif=_index(ipr, "off"))

    def serve(self, pod: Pod, port: int) -> None:
        """A server in the pod answering each connection with the pod's name; returns once it listens."""
        proc = subprocess.Popen(
            pod.command([sys.executable, "-c", SERVER, pod.name, str(port)]),
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        self.servers.append(proc)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the server in {pod.name} did not start")

    def dial(
        self, where: list[str], host: str, port: int, *, count: int = 1, timeout: float = 2.0
    ) -> tuple[collections.Counter[str], float]:
        """Connect `count` times from `where` (a command prefix: a pod's, or the node's); who
        answered (or how it failed), and the seconds it all took."""
        out = subprocess.run(
            [*where, sys.executable, "-c", CLIENT, host, str(port), str(count), str(timeout)],
            capture_output=True,
            check=True,
            timeout=count * timeout + 30,
        )
        result = json.loads(out.stdout)
        return collections.Counter(result["seen"]), float(result["seconds"])

    def in_node(self) -> list[str]:
        return ["ip", "netns", "exec", self.node]

    def destroy(self) -> None:
        for proc in self.servers:
            proc.kill()
        for proc in self.servers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
        for pod in self.pods.values():
            remove_namespace(pod.netns)
        remove_namespace(self.node)  # its table and bridge go with it


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LookupError(f"no link {ifname}")
    return int(found[0])
