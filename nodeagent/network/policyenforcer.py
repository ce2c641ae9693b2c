"""The NetworkPolicy enforcer of one node: keeps the node's nftables rules in step with the cluster.

It follows every NetworkPolicy and Namespace (informers over the read-only watches the node role
grants, bus/permissions.py) and every pod's network view (nodeagent/network/podfeed.py: a
node's credential does not read other nodes' pods in full), and after a change, once the burst
has settled (`settle`), computes the rules (`policyrules`) and applies them in one `nft -f -`
transaction that replaces only our chains and sets. Identical scripts are not applied twice,
except every `refresh_interval`, so rules someone removed by hand come back. A failed apply is
logged and retried with a jittered back-off; the old rules stay in force meanwhile (a
transaction applies whole or not at all). Until every source has synced nothing is applied: a
half-known cluster would make a default-deny drop traffic its allow rules were about to let
through.

The nft runner is a Protocol so that the node's shared runner (nodeagent/network/nft.py) can
replace the private one here; a runner that can also list the table lets the first apply after
a restart delete what a previous run left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from bus.backoff import Backoff
from bus.informer import Informer
from bus.meta import Resource
from bus.resources import Namespace, NetworkPolicy, Pod
from bus.store import Store
from nodeagent.network import policyrules
from nodeagent.network.nft import Nft as CommandNft

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Resource, covariant=True)

SETTLE = 0.1  # seconds a burst of changes may go on before one sync takes them all
REFRESH_INTERVAL = 300.0


class Nft(Protocol):
    async def apply(self, script: str) -> None:
        """Run `script` as one nft transaction; raise if nft refuses it."""


@runtime_checkable
class TableLister(Protocol):
    async def listing(self, table: str) -> str:
        """`nft -j list table ip <table>` output, "" when there is no such table."""


class Source(Protocol[R]):
    """What the enforcer reads objects from (an `Informer` is one)."""

    @property
    def synced(self) -> asyncio.Event: ...

    def items(self) -> Sequence[R]: ...

    def on_change(self, handler: Callable[[Any, Any, Any], None]) -> None: ...


class PolicyEnforcer:
    def __init__(
        self,
        policies: Source[NetworkPolicy],
        pods: Source[Pod],
        namespaces: Source[Namespace],
        *,
        node: str,
        pod_cidr: str,
        nft: Nft | None = None,
        table: str = "",
        settle: float = SETTLE,
        refresh_interval: float = REFRESH_INTERVAL,
        retry: Backoff | None = None,
    ) -> None:
        self.policies, self.pods, self.namespaces = policies, pods, namespaces
        self.node = node
        self.pod_cidr = pod_cidr
        self.nft = nft or CommandNft()
        self.table = table or policyrules.table_name(node)
        self.settle = settle
        self.refresh_interval = refresh_interval
        self.retry = retry or Backoff(first=0.5, cap=30.0)
        self.changed = asyncio.Event()
        self.applied = ""  # the last script nft took
        self.syncs = 0  # successful syncs, applied or found unchanged
        self._owned: policyrules.Owned | None = None  # ours in the table, None until known
        for source in (policies, pods, namespaces):
            source.on_change(lambda *_: self.changed.set())

    async def run(self) -> None:
        """Keep the rules current until cancelled. Never raises for a failed sync."""
        for source in (self.policies, self.pods, self.namespaces):
            await source.synced.wait()
        self.changed.set()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.refresh_interval):
                    await self.changed.wait()
            if not self.changed.is_set():
                self.applied = ""  # a refresh: apply even an unchanged script
            await asyncio.sleep(self.settle)  # let a burst of changes end: one sync for all
            self.changed.clear()
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # nft, or a bug on objects from outside: retry, never stop
                delay = self.retry.next()
                log.warning("network policy: sync failed (%s); again in %.1fs", err, delay, exc_info=True)
                await asyncio.sleep(delay)
                self.changed.set()
            else:
                self.retry.reset()

    async def sync(self) -> None:
        ruleset = policyrules.rules(
            self.policies.items(),
            self.pods.items(),
            self.namespaces.items(),
            node=self.node,
            pod_cidr=self.pod_cidr,
        )
        if self._owned is None:
            listing = await self.nft.listing(self.table) if isinstance(self.nft, TableLister) else ""
            self._owned = policyrules.owned(listing)
        script = policyrules.script(ruleset, table=self.table, previous=self._owned)
        if script != self.applied:
            await self.nft.apply(script)
            self.applied = script
            self._owned = policyrules.Owned.of(ruleset)
            governed = len(ruleset.chains) - len(policyrules.BASE_CHAINS)
            log.info("network policy: rules applied (%d pod chains, %d sets)", governed, len(ruleset.sets))
        self.syncs += 1


async def run(store: Store, pods: Source[Pod], *, node: str, pod_cidr: str, nft: Nft | None = None) -> None:
    """Watch NetworkPolicies and Namespaces (and `pods`: every pod's network view) and enforce
    the policies on this node's pods, until cancelled."""
    policies: Informer[NetworkPolicy] = Informer(store, NetworkPolicy)
    namespaces: Informer[Namespace] = Informer(store, Namespace)
    enforcer = PolicyEnforcer(policies, pods, namespaces, node=node, pod_cidr=pod_cidr, nft=nft)
    async with asyncio.TaskGroup() as tasks:
        for informer in (policies, namespaces):
            tasks.create_task(informer.run())
        tasks.create_task(enforcer.run())
