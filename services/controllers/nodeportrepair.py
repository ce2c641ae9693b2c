"""The nodePort repair pass: NodePorts that no Service holds any more are deleted
(services/controllers/allocationrepair.py), as Kubernetes' nodePort `Repair` loop frees them.

A NodePort is the allocator's when it carries the label `nodeport.steersman.io/managed-by:
nodeportallocator.steersman.io`; a Service holds the nodePorts of its ports while its type is
NodePort or LoadBalancer.
"""

from __future__ import annotations

from bus.client import Client
from bus.controller import Controller
from bus.informer import Informer
from bus.resources import NodePort, Service
from bus.resources.networking import NODE_PORT_ALLOCATOR, NODE_PORT_MANAGED_BY_LABEL, held_node_ports
from services.controllers.allocationrepair import MIN_AGE, RESYNC_EVERY, Allocator, repair_controller


def held_names(service: Service) -> list[str]:
    return [str(port) for port in held_node_ports(service)]


NODE_PORTS = Allocator(
    "nodeport-repair", NodePort, NODE_PORT_MANAGED_BY_LABEL, NODE_PORT_ALLOCATOR, held_names
)


def nodeport_repair_controller(
    client: Client,
    node_ports: Informer[NodePort],
    services: Informer[Service],
    *,
    min_age: float = MIN_AGE,
    resync_every: float = RESYNC_EVERY,
) -> Controller:
    return repair_controller(
        NODE_PORTS, client, node_ports, services, min_age=min_age, resync_every=resync_every
    )
