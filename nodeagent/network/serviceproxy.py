"""Service forwarding in the kernel for a node in pod network mode (kube-proxy's nftables mode).

It reads the Services and Endpoints the agent's `ServiceFeed` keeps (the one the userspace
proxy reads too), computes the table's objects (`servicerules`) and writes them with nft
(`servicetable`, `nft`):

- soon after every change: a wake-up waits `settle` seconds so that a burst of changes is one
  sync, and syncs are at least `min_interval` apart; an endpoint change reaches the kernel in
  well under a second;
- a partial sync writes only what changed since the last sync that succeeded;
- the first sync, every sync after a failure and one every `resync_interval` are full: they
  write every object afresh (and repair whatever else changed the table meanwhile);
- nothing is written before the feed's first listing is in: an agent that restarts keeps the
  rules its predecessor left until it knows the cluster;
- a failed sync (nft refusing, nft missing, a bug) is logged and tried again after a back-off
  of `retry_first` seconds doubling to `retry_cap`, as a full sync; it never ends `run`.

Chains no longer wanted are flushed by the sync that drops them and deleted `stale_after`
seconds later by a transaction of their own (see `servicetable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nodeagent.network import servicetable
from nodeagent.network.nft import Nft, NftError, Table, names
from nodeagent.network.servicerules import Balancing, Ruleset, desired, diff
from nodeagent.proxy.feed import ServiceCache

log = logging.getLogger(__name__)


class NftServiceProxy:
    def __init__(
        self,
        node: str,
        address: str,
        source: ServiceCache,
        nft: Nft,
        *,
        resync_interval: float = 60.0,
        settle: float = 0.02,
        min_interval: float = 0.1,
        retry_first: float = 0.5,
        retry_cap: float = 30.0,
        stale_after: float = 1.0,
        balancing: Balancing = "round-robin",
        cluster_cidr: str = "",
    ) -> None:
        self.node = node
        self.address = address
        self.balancing: Balancing = balancing
        self.cluster_cidr = cluster_cidr
        self.source = source
        self.nft = nft
        self.table = Table.for_node(node)
        self.resync_interval = resync_interval
        self.settle = settle
        self.min_interval = min_interval
        self.retry_first = retry_first
        self.retry_cap = retry_cap
        self.stale_after = stale_after
        self.applied: Ruleset | None = None  # what the table holds; None: the next sync is full
        self.stale: dict[str, float] = {}  # flushed chains to delete, and since when (loop time)
        self.failures = 0  # syncs failed in a row

    async def run(self) -> None:
        """Keep the table in step with the Services until cancelled."""
        loop = asyncio.get_running_loop()
        wake = self.source.watch()
        await self.source.listed.wait()
        next_full = 0.0
        delay = 0.0
        while True:
            now = loop.time()
            deadline = min([next_full, *(t + self.stale_after for t in self.stale.values())])
            if delay:
                await asyncio.sleep(delay)  # backing off: changes wait for the retry
            elif deadline > now:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline - now):
                        await wake.wait()
                        await asyncio.sleep(self.settle)  # let a burst of changes land
            wake.clear()
            await self.delete_stale()
            full = self.applied is None or loop.time() >= next_full
            started = loop.time()
            if await self.sync(full=full):
                delay = 0.0
                if full:
                    next_full = started + self.resync_interval
                # the next sync no sooner than min_interval: the wake stays set meanwhile
                await asyncio.sleep(max(0.0, started + self.min_interval - loop.time()))
            else:
                delay = min(self.retry_cap, self.retry_first * 2 ** (self.failures - 1))
                log.warning("service rules: again in %gs", delay)

    async def sync(self, *, full: bool = False) -> bool:
        """Write what the Services say; whether it worked. A failure makes the next sync full."""
        try:
            ruleset = desired(
                self.source.services.objects.values(), self.source.endpoints.objects, balancing=self.balancing
            )
            if full or self.applied is None:
                await self._full(ruleset)
            else:
                await self._partial(self.applied, ruleset)
        except NftError as err:
            self._failed(f"nft: {err}")
            return False
        except Exception:  # fed from outside: whatever goes wrong is retried, never fatal
            log.exception("service rules: sync failed")
            self._failed("")
            return False
        if self.failures:
            log.info("service rules: table %s in sync again", self.table)
        self.failures = 0
        self.applied = ruleset
        for chain in ruleset.chains:  # back in use before it was deleted
            self.stale.pop(chain, None)
        return True

    async def _full(self, ruleset: Ruleset) -> None:
        listing = await self.nft.list_table(self.table)
        script, stale = servicetable.full_script(
            self.table,
            self.address,
            ruleset,
            existing_chains=names(listing, "chain"),
            existing_sets=names(listing, "set"),
            cluster_cidr=self.cluster_cidr,
        )
        await self.nft.run(script)
        now = asyncio.get_running_loop().time()
        for chain in stale:
            self.stale.setdefault(chain, now)
        log.debug("service rules: full sync of %s (%d chains)", self.table, len(ruleset.chains))

    async def _partial(self, old: Ruleset, new: Ruleset) -> None:
        changes = diff(old, new)
        if not changes:
            return
        await self.nft.run(servicetable.partial_script(self.table, changes))
        now = asyncio.get_running_loop().time()
        for chain in changes.stale_chains:
            self.stale.setdefault(chain, now)
        log.debug(
            "service rules: %d chains written, %d elements changed, %d chains stale",
            len(changes.write_chains),
            len(changes.add_elements) + len(changes.delete_elements),
            len(changes.stale_chains),
        )

    def _failed(self, why: str) -> None:
        self.failures += 1
        self.applied = None
        if why:
            log.warning("service rules: sync of table %s failed: %s", self.table, why)

    async def delete_stale(self, *, now: float | None = None) -> None:
        """Delete the chains stale for `stale_after` seconds. A failure is logged: they stay
        flushed, and the next round tries again."""
        now = asyncio.get_running_loop().time() if now is None else now
        due = [chain for chain, since in self.stale.items() if now - since >= self.stale_after]
        if not due:
            return
        try:
            await self.nft.run(servicetable.delete_chains_script(self.table, due))
        except NftError as err:
            log.warning("service rules: cannot delete %d stale chains yet: %s", len(due), err)
            for chain in due:
                self.stale[chain] = now
            return
        for chain in due:
            del self.stale[chain]

    async def cleanup(self) -> None:
        """Remove the table (the node leaves pod network mode, or goes)."""
        await self.nft.delete_table(self.table)
        self.applied = None
        self.stale.clear()
