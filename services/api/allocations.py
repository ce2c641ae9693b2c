"""What a Service holds beyond its own object: its ClusterIP and its nodePorts, each recorded by
an object of its own (services/api/clusterips.py, nodeports.py). The verbs claim them before a
Service is written, give them back when the write fails, and release what the Service no longer
holds after it was written or removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bus.resources import IPAddress, NodePort, Service
from bus.resources.networking import held_node_ports
from services.api.clusterips import ClusterIPs
from services.api.nodeports import NodePorts


@dataclass
class Claims:
    """The records made for one Service write."""

    address: IPAddress | None = None
    ports: list[NodePort] = field(default_factory=list)


class Allocations:
    def __init__(self, clusterips: ClusterIPs, nodeports: NodePorts) -> None:
        self.clusterips = clusterips
        self.nodeports = nodeports

    async def claim(self, service: Service) -> Claims:
        """Everything a new Service holds. A refusal gives back what was claimed before it."""
        address = await self.clusterips.claim(service)
        try:
            ports = await self.nodeports.claim(service)
        except Exception:
            await self.clusterips.give_back(address)
            raise
        return Claims(address, ports)

    async def claim_update(self, new: Service, current: Service) -> Claims:
        """What an update of `current` to `new` holds that `current` does not: a ClusterIP for
        a Service stored before Services had addresses, and the nodePorts it newly uses."""
        address = await self.clusterips.claim(new) if not current.spec.cluster_ip else None
        try:
            ports = await self.nodeports.claim(new, held=held_node_ports(current))
        except Exception:
            await self.clusterips.give_back(address)
            raise
        return Claims(address, ports)

    async def unclaim(self, claims: Claims, failure: BaseException) -> None:
        """After the Service write the claims were made for failed."""
        await self.clusterips.unclaim(claims.address, failure)
        await self.nodeports.unclaim(claims.ports, failure)

    async def release_unused(self, stored: Service, before: Service) -> None:
        """After an update: the nodePorts `before` held and `stored` does not."""
        await self.nodeports.release(before, keep=held_node_ports(stored))

    async def release(self, service: Service) -> None:
        """After `service` was removed from the store: everything it held."""
        await self.clusterips.release(service)
        await self.nodeports.release(service)
