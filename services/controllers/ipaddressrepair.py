"""The ClusterIP repair pass: IPAddresses that no Service holds any more are deleted.

The API makes an IPAddress before the Service that gets the address, and deletes it with the
Service (services/api/clusterips.py). What that leaves behind — a create whose outcome the API
could not know (a Timeout), an API killed between the two writes, a release that failed — is
found here: an IPAddress made by the allocator (label `ipaddress.kubernetes.io/managed-by:
ipallocator.k8s.io`) whose Service is gone or holds another address. Kubernetes runs this loop
(`RepairIPAddress`) in every kube-apiserver; here the API only answers requests, and the
controllers hold the informers, the leader election and the periodic sweeps, so it is one of
them, and one copy runs.

- Only an IPAddress at least `min_age` old (a minute) is deleted: a younger one may belong to
  a create still in progress, whose Service is about to be stored. A younger orphan is looked
  at again when it comes of age.
- Before deleting, the Service is read live (the informer may be behind) and the delete is a
  compare-and-set on the IPAddress's resourceVersion, so an address given again meanwhile is
  never taken from its new holder.
- Keyed by the address; a Service's change reconciles the address it holds (or held), and a
  sweep every few minutes looks at every IPAddress again, as Kubernetes' loop resyncs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from bus.client import Client
from bus.controller import Controller, Result
from bus.errors import Conflict, NotFound
from bus.events import now
from bus.informer import Informer
from bus.meta import Resource
from bus.resources import IPAddress, Service
from bus.resources.networking import CLUSTER_IP_ALLOCATOR, HEADLESS, MANAGED_BY_LABEL

log = logging.getLogger(__name__)

MIN_AGE = 60.0  # seconds an orphan must have been around before it is deleted
RESYNC_EVERY = 180.0


def service_key(record: IPAddress) -> str:
    """The informer key of the Service an allocator's IPAddress belongs to; "" for any other."""
    ref = record.spec.parent_ref
    if record.metadata.labels.get(MANAGED_BY_LABEL) != CLUSTER_IP_ALLOCATOR:
        return ""
    if ref.group or ref.resource != "services" or not ref.namespace:
        return ""
    return f"{ref.namespace}/{ref.name}"


def holds(service: Service | None, address: str) -> bool:
    return service is not None and service.spec.cluster_ip == address


def age(record: IPAddress, at: datetime) -> float:
    created = record.metadata.creation_timestamp
    return (at - created).total_seconds() if created is not None else float("inf")


class IPAddressRepairReconciler:
    def __init__(
        self,
        client: Client,
        addresses: Informer[IPAddress],
        services: Informer[Service],
        *,
        min_age: float = MIN_AGE,
    ) -> None:
        self.client = client
        self.addresses = addresses
        self.services = services
        self.min_age = min_age

    async def reconcile(self, key: str) -> Result:
        record = self.addresses.get(key)
        if record is None:
            return Result()
        parent = service_key(record)
        if not parent or holds(self.services.get(parent), key):
            return Result()
        waited = age(record, now())
        if waited < self.min_age:
            return Result(requeue_after=self.min_age - waited)
        ref = record.spec.parent_ref
        try:
            live: Service | None = await self.client.get(Service, ref.name, ref.namespace)
        except NotFound:
            live = None
        if holds(live, key):
            return Result()  # the informer is behind
        try:
            await self.client.delete(IPAddress, key, "", resource_version=record.metadata.resource_version)
        except (NotFound, Conflict):
            return Result()  # gone, or given again meanwhile: its change reconciles it
        holder = f"holds {live.spec.cluster_ip or 'no address'}" if live is not None else "is gone"
        log.info("deleted IPAddress %s: service %s %s", key, parent, holder)
        return Result()


def held_keys(obj: Resource) -> list[str]:
    """Map a Service to the address it holds."""
    assert isinstance(obj, Service)
    address = obj.spec.cluster_ip
    return [address] if address and address != HEADLESS else []


def ipaddress_repair_controller(
    client: Client,
    addresses: Informer[IPAddress],
    services: Informer[Service],
    *,
    min_age: float = MIN_AGE,
    resync_every: float = RESYNC_EVERY,
) -> Controller:
    reconciler = IPAddressRepairReconciler(client, addresses, services, min_age=min_age)
    controller = Controller("ipaddress-repair", reconciler, workers=1)
    controller.watch(addresses)
    controller.watch(services, held_keys)

    async def everything() -> Iterable[str]:
        return [record.metadata.name for record in addresses.items()]

    controller.periodic(resync_every, everything)
    return controller
