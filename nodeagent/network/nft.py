"""Running nftables transactions: scripts fed to `nft -f -`.

A script is one transaction: the kernel applies all of it or none of it, so a sync never leaves
half a ruleset behind. This is what kube-proxy's knftables does too; the `nft` command line is
the stable interface (its JSON and netlink forms change more), and one process per sync costs a
few milliseconds.

Each node agent owns one table, `ip steer_<8 hex of sha256(node name)>`, its comment naming the
node, so that several agents sharing a namespace (`steer up`) never touch each other's rules.
`Nft(netns=...)` runs inside another network namespace (`nsenter --net=<path>`); tests use it to
program namespaces of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from dataclasses import dataclass
from typing import Any

FAMILY = "ip"
TIMEOUT = 30.0  # seconds one nft run may take before it is killed and counted as failed


class NftError(Exception):
    """nft refused a script (its message says why) or could not be run."""


@dataclass(frozen=True)
class Table:
    name: str
    comment: str = ""
    family: str = FAMILY

    @classmethod
    def for_node(cls, node: str) -> Table:
        digest = hashlib.sha256(node.encode()).hexdigest()[:8]
        return cls(f"steer_{digest}", comment=f"steersman node {_printable(node)}")

    def __str__(self) -> str:
        return f"{self.family} {self.name}"


@dataclass(frozen=True)
class Nft:
    """Runs nft in the current network namespace, or in the one at `netns` (a path such as
    `/run/netns/<name>` or `/proc/<pid>/ns/net`)."""

    netns: str | None = None
    timeout: float = TIMEOUT

    def _argv(self, *args: str) -> list[str]:
        prefix = ["nsenter", f"--net={self.netns}"] if self.netns else []
        return [*prefix, "nft", *args]

    async def _exec(self, *args: str, stdin: str = "") -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv(*args),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as err:
            raise NftError(f"cannot run nft: {err}") from err
        try:
            async with asyncio.timeout(self.timeout):
                out, err_out = await proc.communicate(stdin.encode())
        except BaseException:  # a timeout or a cancellation: leave no nft behind
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        if proc.returncode != 0:
            message = err_out.decode(errors="replace").strip() or f"nft exited with {proc.returncode}"
            raise NftError(message)
        return out.decode(errors="replace")

    async def run(self, script: str) -> None:
        """Apply `script` as one transaction."""
        if script.strip():
            await self._exec("-f", "-", stdin=script)

    async def apply(self, script: str) -> None:
        """`run`, under the name the NetworkPolicy enforcer's protocol uses."""
        await self.run(script)

    async def listing(self, table: str) -> str:
        """`nft -j list table ip <table>` output, "" when there is no such table."""
        try:
            return await self._exec("-j", "list", "table", FAMILY, table)
        except NftError as err:
            if "No such file or directory" in str(err):
                return ""
            raise

    async def list_table(self, table: Table) -> list[dict[str, Any]]:
        """The table's objects as nft's JSON lists them (`[]` if there is no such table)."""
        try:
            text = await self._exec("-j", "list", "table", table.family, table.name)
        except NftError as err:
            if "No such file or directory" in str(err):
                return []
            raise
        try:
            listing = json.loads(text)
        except ValueError as err:
            raise NftError(f"nft printed no JSON: {err}") from err
        items = listing.get("nftables", []) if isinstance(listing, dict) else []
        return [item for item in items if isinstance(item, dict)]

    async def delete_table(self, table: Table) -> None:
        """Remove the table and everything in it; nothing to do if it is gone already."""
        await self.run(f"add table {table}\ndelete table {table}\n")


def names(listing: list[dict[str, Any]], kind: str) -> set[str]:
    """The names of the objects of one kind (`chain`, `set`, `map`) in a `list_table` answer."""
    found: set[str] = set()
    for item in listing:
        obj = item.get(kind)
        if isinstance(obj, dict) and isinstance(obj.get("name"), str):
            found.add(obj["name"])
    return found


def _printable(text: str) -> str:
    """Text safe inside an nft double-quoted string."""
    return "".join(c if c.isprintable() and c not in '"\\' else "_" for c in text)[:128]
