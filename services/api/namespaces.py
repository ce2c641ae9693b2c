"""Which namespaces exist, from a watch: Kubernetes' NamespaceLifecycle admission, cached.

Every namespaced create must land in an existing namespace that is not terminating. Asking the
store each time costs a round trip per create; this cache, fed by a watch on the namespaces
bucket, answers from memory. A miss still asks the store, so a namespace created a moment ago
through another replica is never refused.
"""

from __future__ import annotations

import asyncio
import logging

from bus.errors import SteerError
from bus.resources import Namespace
from bus.store import Store

log = logging.getLogger(__name__)

RETRY_DELAY = 1.0


class NamespaceCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._terminating: dict[str, bool] = {}

    async def is_terminating(self, name: str) -> bool:
        """Whether namespace `name` is being deleted; NotFound if it does not exist."""
        known = self._terminating.get(name)
        if known is not None:
            return known
        namespace = await self.store.get(Namespace, "", name)
        return namespace.metadata.deletion_timestamp is not None

    async def run(self) -> None:
        """Keep the cache current until cancelled; a broken watch is started again."""
        while True:
            try:
                async for event in self.store.watch(Namespace):
                    if event.object is None:
                        continue  # the synced marker, or a delete marker without a body
                    meta = event.object.metadata
                    if event.type == "DELETED":
                        self._terminating.pop(meta.name, None)
                    else:
                        self._terminating[meta.name] = meta.deletion_timestamp is not None
            except SteerError as err:
                log.warning("namespace watch failed (%s); starting it again", err)
            self._terminating.clear()
            await asyncio.sleep(RETRY_DELAY)
