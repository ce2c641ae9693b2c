"""A node's pod network in miniature, in namespaces of its own, as docs/networking.md lays it out.

A "node" namespace holds a bridge with the gateway 10.244.0.1/24 and forwards (ICMP redirects
off, so pods keep sending through it); each "pod" namespace has `eth0` (its peer a port of the
bridge) with a /32 address, a link route to the gateway and 10.244.0.0/16 through it. So all
traffic between pods crosses the node's forward hook, and the pod's DNS to the gateway its
input hook, where the NetworkPolicy rules go.

Names follow tests/netns.py (`sth-<pid>-<tag>-...`), whose `sweep()` removes what a crashed run
left; `pod_network()` removes everything on every exit path. Nothing here has an address outside
10.244.0.0/24, and no link is made in the machine's own namespace.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from pyroute2 import IPRoute, netns

from tests.netns import PREFIX, remove_namespace, sweep

GATEWAY = "10.244.0.1"
POD_CIDR = "10.244.0.0/24"
SCOPE_LINK = 253

SERVER = """
import socket, sys
family, kind = (socket.AF_INET, socket.SOCK_DGRAM if sys.argv[2] == "udp" else socket.SOCK_STREAM)
s = socket.socket(family, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[3])))
if kind == socket.SOCK_STREAM:
    s.listen(64)
print("ready", flush=True)
while True:
    if kind == socket.SOCK_DGRAM:
        data, peer = s.recvfrom(512)
        s.sendto(b"answer:" + data, peer)
    else:
        c, _ = s.accept()
        c.sendall(b"hello")
        c.close()
"""

CLIENT = """
import socket, sys
host, kind, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
try:
    if kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        s.sendto(b"q", (host, port))
        print("ok" if s.recvfrom(512)[0] == b"answer:q" else "wrong")
    else:
        c = socket.create_connection((host, port), timeout=timeout)
        print("ok" if c.recv(16) == b"hello" else "wrong")
except TimeoutError:
    print("timeout")
except OSError as err:
    print(f"error {err}")
"""


@dataclass
class Host:
    netns: str
    ip: str

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]


@dataclass
class PodNetwork:
    tag: str
    node: Host
    pods: dict[str, Host] = field(default_factory=dict)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    def serve(self, host: Host, port: int, kind: str = "tcp") -> None:
        """A server on `host` (TCP: says hello to each connection; UDP: answers each datagram),
        returning once it listens."""
        proc = subprocess.Popen(
            host.command([sys.executable, "-c", SERVER, host.ip, kind, str(port)]),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.servers.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", line

    def reach(self, source: str, target: str, port: int, kind: str = "tcp", *, timeout: float = 1.5) -> str:
        """From pod `source` to `target` (a pod's name, or an address): "ok", "timeout" or an error."""
        address = self.pods[target].ip if target in self.pods else target
        argv = [sys.executable, "-c", CLIENT, address, kind, str(port), str(timeout)]
        done = subprocess.run(
            self.pods[source].command(argv), capture_output=True, text=True, timeout=timeout + 30
        )
        return done.stdout.strip() or done.stderr.strip()


@contextlib.contextmanager
def pod_network(*names: str) -> Iterator[PodNetwork]:
    """A node namespace and one pod namespace per name (addresses .2, .3, ... in name order)."""
    sweep()
    tag = secrets.token_hex(3)
    base = f"{PREFIX}-{os.getpid()}-{tag}"
    net = PodNetwork(tag, Host(f"{base}-node", GATEWAY))
    made: list[str] = []
    try:
        netns.create(net.node.netns)
        made.append(net.node.netns)
        _make_node(net.node.netns)
        for number, name in enumerate(names, start=2):
            host = Host(f"{base}-p{number}", f"10.244.0.{number}")
            netns.create(host.netns)
            made.append(host.netns)
            _make_pod(net.node.netns, host, port=f"v{number}")
            net.pods[name] = host
        yield net
    finally:
        for proc in net.servers:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        for name in made:
            remove_namespace(name)


def _make_node(name: str) -> None:
    settings = [
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.default.send_redirects=0",
    ]
    subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", *settings], check=True)
    with IPRoute(netns=name) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        ipr.link("add", ifname="br0", kind="bridge")
        bridge = ipr.link_lookup(ifname="br0")[0]
        ipr.addr("add", index=bridge, address=GATEWAY, prefixlen=24)
        ipr.link("set", index=bridge, state="up")


def _make_pod(node: str, pod: Host, *, port: str) -> None:
    with IPRoute(netns=node) as ipr:
        ipr.link("add", ifname=port, kind="veth", peer={"ifname": "eth0", "net_ns_fd": pod.netns})
        index = ipr.link_lookup(ifname=port)[0]
        ipr.link("set", index=index, master=ipr.link_lookup(ifname="br0")[0], state="up")
    with IPRoute(netns=pod.netns) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        eth0 = ipr.link_lookup(ifname="eth0")[0]
        ipr.addr("add", index=eth0, address=pod.ip, prefixlen=32)
        ipr.link("set", index=eth0, state="up")
        ipr.route("add", dst=f"{GATEWAY}/32", oif=eth0, scope=SCOPE_LINK)
        ipr.route("add", dst="10.244.0.0/16", gateway=GATEWAY, oif=eth0)
