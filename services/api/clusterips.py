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
from bus.errors import AlreadyExists, Conflict, Internal, NotFound, SteerError, Timeout, invalid
from bus.informer import Informer
from bus.meta import ObjectMeta
from bus.resources import IPAddress, Service
from bus.resources.networking import (
    CLUSTER_IP_ALLOCATOR,
    HEADLESS,
    MANAGED_BY_LABEL,
    IPAddressSpec,
    ParentReference,
)
from bus.store import Store
from bus.validation.rules import invalid_value
from services.api.admission import prepare_create, set_defaults
from services.api.iprange import ServiceRange

log = logging.getLogger(__name__)

ALREADY_ALLOCATED = "provided IP is already allocated"


def parent_of(service: Service) -> ParentReference:
    meta = service.metadata
    return ParentReference(group="", resource="services", namespace=meta.namespace, name=meta.name)


def record_of(service: Service, address: IPv4Address) -> IPAddress:
    """The IPAddress for `service`, with the server's fields (uid, creationTimestamp: the repair
    pass goes by its age) set as for any create."""
    record = IPAddress(
        metadata=ObjectMeta(name=str(address), labels={MANAGED_BY_LABEL: CLUSTER_IP_ALLOCATOR}),
        spec=IPAddressSpec(parent_ref=parent_of(service)),
    )
    prepare_create(record, kinds.BY_KIND["IPAddress"])
    return record


class ClusterIPs:
    def __init__(
        self, store: Store, service_range: ServiceRange, *, rng: random.Random | None = None
    ) -> None:
        self.store = store
        self.range = service_range
        self.rng = rng or random.Random()
        self.informer: Informer[IPAddress] = Informer(store, IPAddress)

    async def run(self) -> None:
        """Keep the cache of IPAddresses current until cancelled."""
        await self.informer.run()

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
        """The first address of a random walk over the range that the cache does not know as
        taken and whose IPAddress this create makes. When the cache says the range is full, the
        store is listed once more (the cache may not have seen a release yet)."""
        for fresh in (False, True):
            taken = await self._taken() if fresh else self.informer.cache
            for address in self.range.candidates(self.rng):
                if str(address) in taken:
                    continue
                try:
                    return await self.store.create(record_of(service, address))
                except AlreadyExists:
                    continue  # another replica was quicker, or the cache behind: the next one
        raise Internal(
            f"failed to allocate a serviceIP: range is full (all {self.range.size} addresses of the "
            f"service CIDR {self.range.cidr} are allocated)"
        )

    async def _taken(self) -> dict[str, IPAddress]:
        items, _ = await self.store.list(IPAddress)
        return {item.metadata.name: item for item in items}

    async def unclaim(self, record: IPAddress | None, failure: BaseException) -> None:
        """After a Service create failed: delete the IPAddress made for it, unless the Service
        may have been stored all the same (a Timeout), which the repair pass settles."""
        if record is None:
            return
        if isinstance(failure, Timeout):
            log.info("kept IPAddress %s: the create of its Service timed out", record.metadata.name)
            return
        await self._delete(record)

    async def give_back(self, record: IPAddress | None) -> None:
        """Delete the IPAddress made for a Service that was never written."""
        if record is not None:
            await self._delete(record)

    async def release(self, service: Service) -> None:
        """After `service` was removed from the store: delete its IPAddress (if it is its own).
        Never raises: what is left behind is the repair pass's."""
        address = service.spec.cluster_ip
        if not address or address == HEADLESS:
            return
        try:
            record = await self.store.get(IPAddress, "", address)
        except NotFound:
            return
        except SteerError as err:
            log.warning("could not release ClusterIP %s of service %s: %s", address, _name(service), err)
            return
        if record.spec.parent_ref != parent_of(service):
            return
        await self._delete(record)

    async def _delete(self, record: IPAddress) -> None:
        try:
            await self.store.delete(record)
        except (NotFound, Conflict):
            pass  # gone, or rewritten since: not ours to remove any more
        except SteerError as err:
            log.warning("could not delete IPAddress %s (the repair pass will): %s", record.metadata.name, err)


def _name(service: Service) -> str:
    return f"{service.metadata.namespace}/{service.metadata.name}"
