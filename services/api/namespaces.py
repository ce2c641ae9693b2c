"""Which namespaces exist, from a watch: Kubernetes' NamespaceLifecycle admission, cached.

Every namespaced create must land in an existing namespace that is not terminating. Asking the
store each time costs a round trip per create; this cache, an informer on the namespaces bucket,
answers from memory while its watch is live. A miss, or any question while the watch is not live
(the connection dropped and it has not caught up yet), asks the store, so a namespace created a
moment ago through another replica is never refused and a stale cache never answers.
"""

from __future__ import annotations

from bus.informer import Informer
from bus.resources import Namespace
from bus.store import Store


class NamespaceCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.informer: Informer[Namespace] = Informer(store, Namespace)

    async def is_terminating(self, name: str) -> bool:
        """Whether namespace `name` is being deleted; NotFound if it does not exist."""
        known = self.informer.get(name) if self.informer.live else None
        namespace = known if known is not None else await self.store.get(Namespace, "", name)
        return namespace.metadata.deletion_timestamp is not None

    async def run(self) -> None:
        """Keep the cache current until cancelled (the informer resumes and retries by itself)."""
        await self.informer.run()
