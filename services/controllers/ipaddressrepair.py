"""The ClusterIP repair pass: IPAddresses that no Service holds any more are deleted
(services/controllers/allocationrepair.py), Kubernetes' `RepairIPAddress` loop.

An IPAddress is the allocator's when it carries the label `ipaddress.kubernetes.io/managed-by:
ipallocator.k8s.io`; a Service holds the address that is its clusterIP.
"""

from __future__ import annotations

from bus.client import Client
from bus.controller import Controller
from bus.informer import Informer
from bus.resources import IPAddress, Service
from bus.resources.networking import CLUSTER_IP_ALLOCATOR, MANAGED_BY_LABEL, held_cluster_ip
from services.controllers.allocationrepair import MIN_AGE, RESYNC_EVERY, Allocator, repair_controller


def held_addresses(service: Service) -> list[str]:
    address = held_cluster_ip(service)
    return [address] if address else []


CLUSTER_IPS = Allocator("ipaddress-repair", IPAddress, MANAGED_BY_LABEL, CLUSTER_IP_ALLOCATOR, held_addresses)


def service_key(record: IPAddress) -> str:
    """The informer key of the Service an allocator's IPAddress belongs to; "" for any other."""
    return CLUSTER_IPS.service_key(record)


def ipaddress_repair_controller(
    client: Client,
    addresses: Informer[IPAddress],
    services: Informer[Service],
    *,
    min_age: float = MIN_AGE,
    resync_every: float = RESYNC_EVERY,
) -> Controller:
    return repair_controller(
        CLUSTER_IPS, client, addresses, services, min_age=min_age, resync_every=resync_every
    )
