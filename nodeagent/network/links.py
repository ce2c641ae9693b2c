"""Netlink work for the pod network, through pyroute2 (never by parsing `ip` output).

pyroute2's synchronous IPRoute runs an event loop of its own, so the agent calls these from a
thread (`asyncio.to_thread`). Every function is idempotent: the agent may have been killed
halfway through any of them, and the next one finishes or undoes the job.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from pathlib import Path

from pyroute2 import IPRoute, NetlinkError, netns

from nodeagent.network.names import POD_INTERFACE

NETNS_DIR = Path("/run/netns")


def _quiet_child() -> None:
    """pyroute2 forks a child to work inside another namespace, and stops it with SIGTERM. The
    child inherits the asyncio loop's signal wake-up socket: its SIGTERM would be written there
    and read by the agent's loop as the agent's own, and the agent would stop. A forked child
    therefore takes no part in the parent's signal handling."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


os.register_at_fork(after_in_child=_quiet_child)


def _index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def _sysctl(path: str, value: str) -> None:
    Path("/proc/sys/net", path).write_text(value)


def ensure_bridge(name: str, gateway: str, prefixlen: int) -> None:
    """The node's bridge, up, holding the gateway address. Pods are routed through it, so this
    namespace forwards, sends no ICMP redirects (pods on one bridge are meant to go through the
    gateway) and lets a loopback-sourced packet out of the bridge (a NodePort dialled on a
    loopback node address, DNATed to a pod and masqueraded)."""
    with IPRoute() as ipr:
        index = _index(ipr, name)
        if index is None:
            with contextlib.suppress(NetlinkError):  # made meanwhile by a twin: fine
                ipr.link("add", ifname=name, kind="bridge")
            index = _index(ipr, name)
        assert index is not None
        held = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
        for address, length in held - {(gateway, prefixlen)}:  # a pod CIDR the node had before
            ipr.addr("del", index=index, address=address, prefixlen=length)
        if (gateway, prefixlen) not in held:
            ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")
    _sysctl("ipv4/ip_forward", "1")
    _sysctl(f"ipv4/conf/{name}/send_redirects", "0")
    _sysctl(f"ipv4/conf/{name}/route_localnet", "1")


def delete_link(name: str) -> None:
    """Remove a link (a veth takes its peer with it); no error if it is not there."""
    with IPRoute() as ipr:
        index = _index(ipr, name)
        if index is not None:
            with contextlib.suppress(NetlinkError):
                ipr.link("del", index=index)


def create_netns(name: str) -> None:
    if not (NETNS_DIR / name).exists():
        netns.create(name)


def attach_netns(name: str, pid: int) -> None:
    """Give the network namespace of process `pid` (a sandbox container's) a name in /run/netns."""
    if not (NETNS_DIR / name).exists():
        netns.attach(name, pid)


def remove_netns(name: str) -> None:
    if (NETNS_DIR / name).exists():
        with contextlib.suppress(OSError):
            netns.remove(name)


def netns_names() -> list[str]:
    return sorted(path.name for path in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []


def plug_pod(
    *, bridge: str, veth: str, namespace: str, address: str, gateway: str, routes: list[str]
) -> None:
    """A veth pair from the bridge into the pod's namespace, `address`/32 on its `eth0`, a link
    route to the gateway and `routes` (CIDRs) through it. A pair left by an interrupted run is
    made again from scratch."""
    with IPRoute() as ipr:
        bridge_index = _index(ipr, bridge)
        if bridge_index is None:
            raise LookupError(f"bridge {bridge} is missing")
        stale = _index(ipr, veth)
        if stale is not None:
            ipr.link("del", index=stale)
    with IPRoute(netns=namespace) as ipr:
        stale = _index(ipr, POD_INTERFACE)
        if stale is not None:
            ipr.link("del", index=stale)
    with IPRoute() as ipr:
        ipr.link("add", ifname=veth, kind="veth", peer={"ifname": POD_INTERFACE, "net_ns_fd": namespace})
        index = _index(ipr, veth)
        assert index is not None
        ipr.link("set", index=index, master=bridge_index, state="up")
        # Hairpin: a pod reaching itself through its Service is DNATed back to its own address,
        # and the bridge (which sees it with br_netfilter) must send it out the port it came in.
        ipr.brport("set", index=index, mode=1)
    with IPRoute(netns=namespace) as ipr:
        lo = _index(ipr, "lo")
        if lo is not None:
            ipr.link("set", index=lo, state="up")
        eth0 = _index(ipr, POD_INTERFACE)
        assert eth0 is not None
        ipr.addr("add", index=eth0, address=address, prefixlen=32)
        ipr.link("set", index=eth0, state="up")
        ipr.route("add", dst=f"{gateway}/32", oif=eth0, scope=253)  # scope link
        for cidr in routes:
            try:
                ipr.route("add", dst=cidr, gateway=gateway, oif=eth0)
            except NetlinkError as err:
                if err.code != errno.EEXIST:
                    raise


def pod_address(namespace: str) -> str | None:
    """The address on the pod's `eth0`, if its namespace and interface are there."""
    if not (NETNS_DIR / namespace).exists():
        return None
    with IPRoute(netns=namespace) as ipr:
        eth0 = _index(ipr, POD_INTERFACE)
        if eth0 is None:
            return None
        for addr in ipr.get_addr(index=eth0, family=2):
            return str(addr.get_attr("IFA_ADDRESS"))
    return None
