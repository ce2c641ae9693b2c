"""NodePorts: the API gives every port of a NodePort or LoadBalancer Service a port open on every
node, never one held by another Service.

As ClusterIPs are allocated (services/api/clusterips.py): every port held is a NodePort object
named by the port (`30080`), pointing at its Service (`spec.parentRef`), created with the
store's create-only compare-and-set before the Service is written, so of two API replicas
racing for one port exactly one gets it; the other is told the name is taken and tries the next
port. A cache of the NodePorts (an informer) says which ports to skip without asking; it is only
a hint, the create decides. Kubernetes keeps a bitmap of the range in one object instead, which
every allocation rewrites.

- Ports asked for are claimed first, then the missing ones are allocated; a claim that fails
  partway deletes what it made. A Service write that fails afterwards gives them back too,
  unless its outcome is unknown (a Timeout); the repair pass of `steer controllers`
  (services/controllers/nodeportrepair.py) deletes what is left behind once it is a minute old.
- A Service that gives up a port (an update, a type changed to ClusterIP, a delete) has its
  NodePort deleted right after the write; if that fails, the repair pass deletes it later.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable

from bus import kinds
from bus.errors import AlreadyExists, Internal, StatusCause, Timeout, invalid
from bus.meta import ObjectMeta
from bus.resources import NodePort, Service
from bus.resources.networking import (
    NODE_PORT_ALLOCATOR,
    NODE_PORT_MANAGED_BY_LABEL,
    NODE_PORT_TYPES,
    NodePortSpec,
    held_node_ports,
)
from bus.store import Store
from bus.validation.rules import invalid_value
from services.api.admission import prepare_create
from services.api.heldrecords import HeldRecords, parent_of
from services.api.portrange import NodePortRange

log = logging.getLogger(__name__)

ALREADY_ALLOCATED = "provided port is already allocated"


def record_of(service: Service, port: int) -> NodePort:
    """The NodePort for `service`, with the server's fields (uid, creationTimestamp: the repair
    pass goes by its age) set as for any create."""
    record = NodePort(
        metadata=ObjectMeta(name=str(port), labels={NODE_PORT_MANAGED_BY_LABEL: NODE_PORT_ALLOCATOR}),
        spec=NodePortSpec(parent_ref=parent_of(service)),
    )
    prepare_create(record, kinds.BY_KIND["NodePort"])
    return record


class NodePorts(HeldRecords[NodePort]):
    def __init__(self, store: Store, port_range: NodePortRange, *, rng: random.Random | None = None) -> None:
        super().__init__(store, NodePort)
        self.range = port_range
        self.rng = rng or random.Random()

    async def claim(self, service: Service, *, held: Iterable[int] = ()) -> list[NodePort]:
        """Give every port of a NodePort or LoadBalancer `service` its nodePort: claim those it
        asks for but does not hold already (`held`: the stored Service's), allocate the missing
        ones. The NodePorts made. Invalid naming `spec.ports[i].nodePort` for a port outside the
        range or taken; Internal when the range is full."""
        if service.spec.type not in NODE_PORT_TYPES:
            return []
        kept = set(held)
        made: list[NodePort] = []
        try:
            causes: list[StatusCause] = []
            for i, port in enumerate(service.spec.ports):
                if port.node_port is not None and port.node_port not in kept:
                    refusal = await self._claim_given(service, port.node_port, made)
                    if refusal:
                        causes.append(invalid_value(f"spec.ports[{i}].nodePort", port.node_port, refusal))
            if causes:
                raise invalid(service.kind, service.metadata.name, causes)
            for port in service.spec.ports:
                if port.node_port is None:
                    record = await self._claim_free(service)
                    made.append(record)
                    port.node_port = int(record.metadata.name)
        except Exception:
            await self.give_back(made)
            raise
        return made

    async def _claim_given(self, service: Service, port: int, made: list[NodePort]) -> str:
        """Make the NodePort of `port` (added to `made`); why it cannot be had, or ""."""
        refusal = self.range.refusal(port)
        if refusal:
            return refusal
        try:
            made.append(await self.store.create(record_of(service, port)))
        except AlreadyExists:
            return ALREADY_ALLOCATED
        return ""

    async def _claim_free(self, service: Service) -> NodePort:
        """The NodePort of the first free port of a random walk over the range."""
        record = await self.create_first_free(
            lambda: map(str, self.range.candidates(self.rng)), lambda name: record_of(service, int(name))
        )
        if record is None:
            raise Internal(
                f"failed to allocate a nodePort: range is full (all {self.range.size} ports of the "
                f"node port range {self.range} are allocated)"
            )
        return record

    async def unclaim(self, records: list[NodePort], failure: BaseException) -> None:
        """After a Service write failed: delete the NodePorts made for it, unless the Service
        may have been written all the same (a Timeout), which the repair pass settles."""
        if records and isinstance(failure, Timeout):
            log.info("kept NodePorts %s: the write of their Service timed out", _names(records))
            return
        await self.give_back(records)

    async def give_back(self, records: list[NodePort]) -> None:
        for record in records:
            await self.delete(record)

    async def release(self, service: Service, *, keep: Iterable[int] = ()) -> None:
        """After `service` was written without some of its nodePorts, or removed from the store:
        delete the NodePorts it held but for `keep` (if they are its own)."""
        for port in sorted(set(held_node_ports(service)) - set(keep)):
            await self.release_named(service, str(port), f"nodePort {port}")


def _names(records: list[NodePort]) -> str:
    return ", ".join(record.metadata.name for record in records)
