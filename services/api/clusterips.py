"""ClusterIPs: the API hands each Service an address of the service CIDR, never one held by another.

Kubernetes' design since 1.33 (KEP-1880): every address held is an IPAddress object named by
the address (`10.96.0.10`), pointing at its Service (`spec.parentRef`). The object is created
with the store's create-only compare-and-set before the Service is stored, so of two API
replicas racing for one address exactly one gets it: the other is told the name is taken and
tries the next address. A cache of the IPAddresses (an informer) says which addresses to skip
without asking; it is only a hint, the create decides.

- A Service create that fails after its IPAddress was made deletes it again, unless the
  outcome is unknown (a Timeout: the Service may have been stored after all); the repair pass
  of `steer controllers` (services/controllers/ipaddressrepair.py) deletes what such a failure,
  or an API killed mid-create, leaves behind, once it is a minute old.
- A Service removed from the store has its IPAddress deleted right after; if that fails, the
  repair pass deletes it later.
"""

from __future__ import annotations

import logging
import random
from ipaddress import IPv4Address

from bus import kinds
from bus.errors import AlreadyExists, Internal, Timeout, invalid
from bus.meta import ObjectMeta
from bus.resources import IPAddress, Service
from bus.resources.networking import (
    CLUSTER_IP_ALLOCATOR,
    HEADLESS,
    MANAGED_BY_LABEL,
    IPAddressSpec,
    held_cluster_ip,
)
from bus.store import Store
from bus.validation.rules import invalid_value
from services.api.admission import prepare_create, set_defaults
from services.api.heldrecords import HeldRecords, parent_of
from services.api.iprange import ServiceRange

log = logging.getLogger(__name__)

ALREADY_ALLOCATED = "provided IP is already allocated"


def record_of(service: Service, address: IPv4Address) -> IPAddress:
    """The IPAddress for `service`, with the server's fields (uid, creationTimestamp: the repair
    pass goes by its age) set as for any create."""
    record = IPAddress(
        metadata=ObjectMeta(name=str(address), labels={MANAGED_BY_LABEL: CLUSTER_IP_ALLOCATOR}),
        spec=IPAddressSpec(parent_ref=parent_of(service)),
    )
    prepare_create(record, kinds.BY_KIND["IPAddress"])
    return record


class ClusterIPs(HeldRecords[IPAddress]):
    def __init__(
        self, store: Store, service_range: ServiceRange, *, rng: random.Random | None = None
    ) -> None:
        super().__init__(store, IPAddress)
        self.range = service_range
        self.rng = rng or random.Random()

    async def claim(self, service: Service) -> IPAddress | None:
        """Give a new Service its ClusterIP (the one it asks for, or a random free one) and fill
        in the defaults; the IPAddress made, or None for a headless Service. Invalid naming
        `spec.clusterIP` for an address outside the range or taken; Internal when the range is
        full."""
        spec = service.spec
        spec.cluster_ip = spec.cluster_ip or next(iter(spec.cluster_ips), "")
        if spec.cluster_ip == HEADLESS:
            set_defaults(service)
            return None
        if spec.cluster_ip:
            record = await self._claim_given(service, IPv4Address(spec.cluster_ip))
        else:
            record = await self._claim_free(service)
            spec.cluster_ip = record.metadata.name
        set_defaults(service)
        return record

    async def _claim_given(self, service: Service, address: IPv4Address) -> IPAddress:
        refusal = self.range.refusal(address)
        if not refusal:
            try:
                return await self.store.create(record_of(service, address))
            except AlreadyExists:
                refusal = ALREADY_ALLOCATED
        cause = invalid_value("spec.clusterIP", str(address), refusal)
        raise invalid(service.kind, service.metadata.name, [cause])

    async def _claim_free(self, service: Service) -> IPAddress:
        """The IPAddress of the first free address of a random walk over the range."""
        record = await self.create_first_free(
            lambda: map(str, self.range.candidates(self.rng)),
            lambda name: record_of(service, IPv4Address(name)),
        )
        if record is None:
            raise Internal(
                f"failed to allocate a serviceIP: range is full (all {self.range.size} addresses of the "
                f"service CIDR {self.range.cidr} are allocated)"
            )
        return record

    async def unclaim(self, record: IPAddress | None, failure: BaseException) -> None:
        """After a Service create failed: delete the IPAddress made for it, unless the Service
        may have been stored all the same (a Timeout), which the repair pass settles."""
        if record is None:
            return
        if isinstance(failure, Timeout):
            log.info("kept IPAddress %s: the create of its Service timed out", record.metadata.name)
            return
        await self.delete(record)

    async def give_back(self, record: IPAddress | None) -> None:
        """Delete the IPAddress made for a Service that was never written."""
        if record is not None:
            await self.delete(record)

    async def release(self, service: Service) -> None:
        """After `service` was removed from the store: delete its IPAddress (if it is its own)."""
        if address := held_cluster_ip(service):
            await self.release_named(service, address, f"ClusterIP {address}")
