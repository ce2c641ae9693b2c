"""The repair passes of what the API allocates for Services: records no Service holds any more
are deleted.

The API makes a record (an IPAddress for a ClusterIP, a NodePort for a nodePort) before the
Service that holds its value, and deletes it when the Service gives the value up
(services/api/clusterips.py, nodeports.py). What that leaves behind — a write whose outcome the
API could not know (a Timeout), an API killed between the two writes, a release that failed —
is found here: a record the allocator made (its managed-by label) whose Service is gone or no
longer holds its value. Kubernetes runs such loops (`RepairIPAddress`, the nodePort `Repair`)
in every kube-apiserver; here the API only answers requests, and the controllers hold the
informers, the leader election and the periodic sweeps, so they are controllers, and one copy
of each runs.

- Only a record at least `min_age` old (a minute) is deleted: a younger one may belong to a
  write still in progress, whose Service is about to be stored. A younger orphan is looked at
  again when it comes of age.
- Before deleting, the Service is read live (the informer may be behind) and the delete is a
  compare-and-set on the record's resourceVersion, so a value given again meanwhile is never
  taken from its new holder.
- Keyed by the record's name (the value); a Service's change reconciles the values it holds (or
  held), and a sweep every few minutes looks at every record again, as Kubernetes' loops resync.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from bus.client import Client
from bus.controller import Controller, Result
from bus.errors import Conflict, NotFound
from bus.events import now
from bus.informer import Informer
from bus.meta import Resource
from bus.resources import IPAddress, NodePort, Service

log = logging.getLogger(__name__)

MIN_AGE = 60.0  # seconds an orphan must have been around before it is deleted
RESYNC_EVERY = 180.0

R = TypeVar("R", IPAddress, NodePort)


@dataclass(frozen=True)
class Allocator(Generic[R]):
    """What one allocator records, and how to tell its records and what a Service holds."""

    name: str  # the controller's
    kind: type[R]
    label: str  # the managed-by label, and the allocator's value of it
    value: str
    held: Callable[[Service], list[str]]  # the record names a Service holds

    def service_key(self, record: R) -> str:
        """The informer key of the Service a record of this allocator belongs to; "" for any
        other record."""
        ref = record.spec.parent_ref
        if record.metadata.labels.get(self.label) != self.value:
            return ""
        if ref.group or ref.resource != "services" or not ref.namespace:
            return ""
        return f"{ref.namespace}/{ref.name}"

    def holds(self, service: Service | None, name: str) -> bool:
        return service is not None and name in self.held(service)


def age(record: Resource, at: datetime) -> float:
    created = record.metadata.creation_timestamp
    return (at - created).total_seconds() if created is not None else float("inf")


class RepairReconciler(Generic[R]):
    def __init__(
        self,
        allocator: Allocator[R],
        client: Client,
        records: Informer[R],
        services: Informer[Service],
        *,
        min_age: float = MIN_AGE,
    ) -> None:
        self.allocator: Allocator[R] = allocator
        self.client = client
        self.records: Informer[R] = records
        self.services = services
        self.min_age = min_age

    async def reconcile(self, key: str) -> Result:
        record = self.records.get(key)
        if record is None:
            return Result()
        parent = self.allocator.service_key(record)
        if not parent or self.allocator.holds(self.services.get(parent), key):
            return Result()
        waited = age(record, now())
        if waited < self.min_age:
            return Result(requeue_after=self.min_age - waited)
        ref = record.spec.parent_ref
        try:
            live: Service | None = await self.client.get(Service, ref.name, ref.namespace)
        except NotFound:
            live = None
        if self.allocator.holds(live, key):
            return Result()  # the informer is behind
        kind = self.allocator.kind
        try:
            await self.client.delete(kind, key, "", resource_version=record.metadata.resource_version)
        except (NotFound, Conflict):
            return Result()  # gone, or given again meanwhile: its change reconciles it
        holder = "no longer holds it" if live is not None else "is gone"
        log.info("deleted %s %s: service %s %s", kind.__name__, key, parent, holder)
        return Result()


def repair_controller(
    allocator: Allocator[R],
    client: Client,
    records: Informer[R],
    services: Informer[Service],
    *,
    min_age: float = MIN_AGE,
    resync_every: float = RESYNC_EVERY,
) -> Controller:
    reconciler = RepairReconciler(allocator, client, records, services, min_age=min_age)
    controller = Controller(allocator.name, reconciler, workers=1)
    controller.watch(records)

    def held_keys(obj: Resource) -> list[str]:
        assert isinstance(obj, Service)
        return allocator.held(obj)

    controller.watch(services, held_keys)

    async def everything() -> Iterable[str]:
        return [record.metadata.name for record in records.items()]

    controller.periodic(resync_every, everything)
    return controller
