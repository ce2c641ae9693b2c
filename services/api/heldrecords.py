"""What the ClusterIP and NodePort allocators share: every value a Service holds (an address, a
port) is a cluster-scoped record named by the value and pointing at its Service; the store's
create-only compare-and-set decides who gets a value, a cache of the records (an informer) only
says which values to skip without asking; a record is deleted only while it is still the
Service's (services/api/clusterips.py, nodeports.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from bus.errors import AlreadyExists, Conflict, NotFound, SteerError
from bus.informer import Informer
from bus.resources import IPAddress, NodePort, Service
from bus.resources.networking import ParentReference
from bus.store import Store

log = logging.getLogger(__name__)

R = TypeVar("R", IPAddress, NodePort)


def parent_of(service: Service) -> ParentReference:
    meta = service.metadata
    return ParentReference(group="", resource="services", namespace=meta.namespace, name=meta.name)


def service_name(service: Service) -> str:
    return f"{service.metadata.namespace}/{service.metadata.name}"


class HeldRecords(Generic[R]):
    def __init__(self, store: Store, cls: type[R]) -> None:
        self.store = store
        self.cls: type[R] = cls
        self.informer: Informer[R] = Informer(store, cls)

    async def run(self) -> None:
        """Keep the cache of records current until cancelled."""
        await self.informer.run()

    async def create_first_free(
        self, candidates: Callable[[], Iterable[str]], make: Callable[[str], R]
    ) -> R | None:
        """The record of the first candidate name the cache does not know as taken and whose
        record this create makes; None when every candidate is taken. When the cache says
        all are, the store is listed once more (the cache may not have seen a release yet)."""
        for fresh in (False, True):
            taken = await self._taken() if fresh else set(self.informer.cache)
            for name in candidates():
                if name in taken:
                    continue
                try:
                    return await self.store.create(make(name))
                except AlreadyExists:
                    continue  # another replica was quicker, or the cache behind: the next one
        return None

    async def _taken(self) -> set[str]:
        items, _ = await self.store.list(self.cls)
        return {item.metadata.name for item in items}

    async def release_named(self, service: Service, name: str, what: str) -> None:
        """Delete the record `name` if it is still `service`'s. Never raises: what is left
        behind is the repair pass's."""
        try:
            record = await self.store.get(self.cls, "", name)
        except NotFound:
            return
        except SteerError as err:
            log.warning("could not release %s of service %s: %s", what, service_name(service), err)
            return
        if record.spec.parent_ref == parent_of(service):
            await self.delete(record)

    async def delete(self, record: R) -> None:
        try:
            await self.store.delete(record)
        except (NotFound, Conflict):
            pass  # gone, or rewritten since: not ours to remove any more
        except SteerError as err:
            log.warning(
                "could not delete %s %s (the repair pass will): %s",
                self.cls.__name__,
                record.metadata.name,
                err,
            )
