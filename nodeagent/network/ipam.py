"""Pod addresses of one node, from its pod CIDR: never one address to two live pods.

As CNI's host-local plugin: one file per address handed out, named by the address and holding
the pod uid, in the node's data directory. The file is created (exclusively) before the address
is configured anywhere and removed only after the pod's interface is gone, so an agent killed
at any moment, and started again, knows every address that may be in use: it keeps those of the
pods it adopts and frees the others (`release`). The gateway (the first host address) is the
node's own; addresses are handed out in turn after the last one given, so a freed address is
not reused at once (a peer's conntrack entries for it have time to expire).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from pathlib import Path


class AddressesExhausted(Exception):
    """Every address of the pod CIDR is taken."""


class AddressBook:
    def __init__(self, directory: Path, cidr: str) -> None:
        self.directory = directory
        self.network = ipaddress.IPv4Network(cidr)
        if self.network.num_addresses < 4:
            raise ValueError(f"pod CIDR {cidr} is too small (a gateway and at least one pod)")
        self.gateway = self.network.network_address + 1
        self._last = self.gateway

    def leases(self) -> dict[str, str]:
        """pod uid -> address, as the files say (files of other ranges included)."""
        found: dict[str, str] = {}
        if not self.directory.is_dir():
            return found
        for path in self.directory.iterdir():
            try:
                ipaddress.IPv4Address(path.name)
                uid = path.read_text().split("\n", 1)[0].strip()
            except (ValueError, OSError):
                continue
            if uid:
                found[uid] = path.name
        return found

    def address_of(self, pod_uid: str) -> str | None:
        for uid, address in self.leases().items():
            if uid == pod_uid:
                return address
        return None

    def allocate(self, pod_uid: str) -> str:
        """The pod's address: the one it holds already, else the next free one."""
        held = self.address_of(pod_uid)
        if held is not None:
            return held
        self.directory.mkdir(parents=True, exist_ok=True)
        hosts = self.network.num_addresses - 3  # not the network, the gateway or broadcast
        first = int(self.gateway) + 1
        start = int(self._last) + 1 - first
        for step in range(hosts):
            candidate = ipaddress.IPv4Address(first + (start + step) % hosts)
            if self._claim(candidate, pod_uid):
                self._last = candidate
                return str(candidate)
        raise AddressesExhausted(f"no free address left in pod CIDR {self.network}")

    def _claim(self, address: ipaddress.IPv4Address, pod_uid: str) -> bool:
        path = self.directory / str(address)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, f"{pod_uid}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def release(self, pod_uid: str) -> None:
        """Free every address the pod holds (no error if none)."""
        for uid, address in self.leases().items():
            if uid == pod_uid:
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / address).unlink()
