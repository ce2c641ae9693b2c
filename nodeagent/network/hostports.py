"""`hostPort`s of pods on the pod network, published on the node's address (CNI's portmap).

A container port that declares a hostPort is reached at `<node address>:<hostPort>`, DNATed to
`<pod IP>:<containerPort>` in the node's nftables table, for connections from other hosts and
from the node itself; DNATed packets from a loopback address (a loopback node address, as in
`steer up`) are masqueraded, since a pod cannot answer them. The agent keeps the mappings of its
running pods and rewrites the one chain after every change, with back-off while nft fails.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from nodeagent.network.nft import Nft, Table

log = logging.getLogger(__name__)

CHAIN = "hostports"
RETRY_FIRST = 0.2
RETRY_CAP = 10.0


@dataclass(frozen=True, order=True)
class HostPort:
    protocol: str  # tcp or udp
    host_port: int
    pod_ip: str
    container_port: int


def script(table: Table, address: str, ports: list[HostPort]) -> str:
    """One transaction that makes the chains if needed and rewrites the mappings."""
    lines = [
        f'add table {table} {{ comment "{table.comment}"; }}',
        f"add chain {table} {CHAIN}",
        f"add chain {table} {CHAIN}-prerouting {{ type nat hook prerouting priority -100; }}",
        f"add chain {table} {CHAIN}-output {{ type nat hook output priority -100; }}",
        f"add chain {table} {CHAIN}-postrouting {{ type nat hook postrouting priority 100; }}",
        *(f"flush chain {table} {chain}" for chain in (CHAIN, f"{CHAIN}-prerouting", f"{CHAIN}-output")),
        f"flush chain {table} {CHAIN}-postrouting",
        f"add rule {table} {CHAIN}-prerouting ip daddr {address} jump {CHAIN}",
        f"add rule {table} {CHAIN}-output ip daddr {address} jump {CHAIN}",
        f"add rule {table} {CHAIN}-postrouting ct status dnat ip saddr 127.0.0.0/8 masquerade",
    ]
    for port in sorted(ports):
        lines.append(
            f"add rule {table} {CHAIN} {port.protocol} dport {port.host_port} "
            f"dnat to {port.pod_ip}:{port.container_port}"
        )
    return "\n".join(lines) + "\n"


class HostPorts:
    """The node's published hostPorts, kept in the kernel."""

    def __init__(self, node: str, address: str, nft: Nft | None = None) -> None:
        self.table = Table.for_node(node)
        self.address = address
        self.nft = nft or Nft()
        self.by_pod: dict[str, list[HostPort]] = {}
        # Not set at first: a restarted agent leaves its predecessor's mappings in place until
        # its pods publish theirs (the first publication rewrites the chain whole).
        self.changed = asyncio.Event()

    def publish(self, pod_uid: str, ports: list[HostPort]) -> None:
        if self.by_pod.get(pod_uid, []) != ports:
            self.by_pod[pod_uid] = ports
            self.changed.set()

    def withdraw(self, pod_uid: str) -> None:
        if self.by_pod.pop(pod_uid, None):
            self.changed.set()

    async def run(self) -> None:
        delay = RETRY_FIRST
        while True:
            await self.changed.wait()
            self.changed.clear()
            ports = [port for ports in self.by_pod.values() for port in ports]
            try:
                await self.nft.run(script(self.table, self.address, ports))
                delay = RETRY_FIRST
            except Exception as err:  # noqa: BLE001 (nft failing: tried again, never fatal)
                log.error("cannot publish host ports: %s; trying again in %.1fs", err, delay)
                self.changed.set()
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, RETRY_CAP)
