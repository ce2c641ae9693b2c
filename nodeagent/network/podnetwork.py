"""The pod network of one node (docs/networking.md): its bridge, and each pod's address and link.

`attach` gives a pod its address (ipam.py) and plugs its namespace into the bridge; `detach`
undoes both; `keep_only` is the clean-up of a start: whatever a previous agent left for pods
that are gone (addresses, veths, namespaces) goes, whatever belongs to pods that still run
stays untouched, their traffic uninterrupted. `remove_all` takes down everything the node
made, for `steer down`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from nodeagent.network import links, names
from nodeagent.network.ipam import AddressBook

log = logging.getLogger(__name__)

DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_SERVICE_CIDR = "10.96.0.0/16"


@dataclass
class PodNetwork:
    node: str
    data_dir: Path  # the node's own data directory
    cluster_cidr: str = DEFAULT_CLUSTER_CIDR
    service_cidr: str = DEFAULT_SERVICE_CIDR
    pod_cidr: str = ""
    book: AddressBook | None = field(default=None, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    @property
    def bridge(self) -> str:
        return names.bridge(self.node)

    @property
    def gateway(self) -> str:
        assert self.book is not None, "the network is not started"
        return str(self.book.gateway)

    @property
    def ipam_dir(self) -> Path:
        return self.data_dir / "ipam"

    async def start(self, pod_cidr: str) -> None:
        """Make the bridge for the node's pod CIDR (once the Node has one)."""
        book = AddressBook(self.ipam_dir, pod_cidr)
        prefix = ipaddress.IPv4Network(pod_cidr).prefixlen
        await asyncio.to_thread(links.ensure_bridge, self.bridge, str(book.gateway), prefix)
        self.pod_cidr, self.book = pod_cidr, book
        log.info("pod network of %s: %s on bridge %s", self.node, pod_cidr, self.bridge)

    async def attach(self, pod_uid: str, namespace: str) -> str:
        """The pod's address, configured in `namespace` (a name in /run/netns); kept as it is if
        a previous agent configured it already."""
        assert self.book is not None, "the network is not started"
        async with self._lock:  # allocation reads and writes the address files
            address = self.book.allocate(pod_uid)
        if await asyncio.to_thread(links.pod_address, namespace) == address:
            return address
        await asyncio.to_thread(
            links.plug_pod,
            bridge=self.bridge,
            veth=names.veth(pod_uid),
            namespace=namespace,
            address=address,
            gateway=self.gateway,
            routes=[self.cluster_cidr, self.service_cidr],
        )
        return address

    def address_of(self, pod_uid: str) -> str | None:
        return self.book.address_of(pod_uid) if self.book is not None else None

    async def detach(self, pod_uid: str) -> None:
        """Remove the pod's link and namespace (if the agent made it), then free its address."""
        await asyncio.to_thread(links.delete_link, names.veth(pod_uid))
        await asyncio.to_thread(links.remove_netns, names.netns(pod_uid))
        async with self._lock:
            AddressBook(self.ipam_dir, self.pod_cidr or DEFAULT_CLUSTER_CIDR).release(pod_uid)

    def leased(self) -> set[str]:
        """The pods holding an address of this node, as the address files say."""
        return set(AddressBook(self.ipam_dir, self.pod_cidr or DEFAULT_CLUSTER_CIDR).leases())

    async def keep_only(self, pods: set[str]) -> None:
        """Free what earlier agents left for pods not in `pods`."""
        for uid in sorted(self.leased() - pods):
            log.info("removing the network of pod %s, which no longer runs here", uid)
            await self.detach(uid)

    async def remove_all(self) -> None:
        """Everything the node made: every pod's link and namespace, the bridge, the addresses."""
        for uid in sorted(self.leased()):
            await self.detach(uid)
        await asyncio.to_thread(links.delete_link, self.bridge)
        await asyncio.to_thread(shutil.rmtree, self.ipam_dir, True)
