"""ServiceLB: `type: LoadBalancer` on machines with no cloud load balancer, as k3s serves it.

There is no load balancer to provision: every node agent opens a LoadBalancer Service's ports on
its node's address (docs/networking.md), so the nodes themselves are the load balancer, and
their addresses are what the Service publishes. For every Service of type LoadBalancer,
`status.loadBalancer.ingress` is the InternalIP of every Ready node (sorted, one entry each),
but for nodes labelled `node.kubernetes.io/exclude-from-external-load-balancers` (Kubernetes'
label for that); for any other type it is empty, so a Service that changes type loses it.

Keyed by the Service and level-based: a Node's change reconciles every Service that is (or
was) published. The status is written through the API's status verb on the version read
(compare-and-set); a Conflict reads the Service live and writes once more.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Callable, Iterable

import msgspec

from bus.client import Client
from bus.controller import Controller, Result
from bus.errors import Conflict, NotFound
from bus.informer import Informer, key_of
from bus.meta import Resource, is_true
from bus.resources import Node, Service
from bus.resources.networking import LoadBalancerIngress, LoadBalancerStatus

log = logging.getLogger(__name__)

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


def serves(node: Node) -> bool:
    return (
        is_true(node.status.conditions)
        and node.metadata.deletion_timestamp is None
        and EXCLUDE_LABEL not in node.metadata.labels
    )


def ingress_for(service: Service, nodes: Iterable[Node]) -> list[LoadBalancerIngress]:
    """What `status.loadBalancer.ingress` should say for `service` (pure)."""
    if service.spec.type != "LoadBalancer":
        return []
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for node in nodes:
        if not serves(node):
            continue
        for address in node.status.addresses:
            if address.type == "InternalIP":
                with contextlib.suppress(ValueError):  # a node's word: not ours to trust blindly
                    found.add(ipaddress.ip_address(address.address))
    ordered = sorted(found, key=lambda a: (a.version, a))
    return [LoadBalancerIngress(ip=str(address)) for address in ordered]


class ServiceLBReconciler:
    def __init__(self, client: Client, services: Informer[Service], nodes: Informer[Node]) -> None:
        self.client = client
        self.services = services
        self.nodes = nodes

    async def reconcile(self, key: str) -> Result:
        service = self.services.get(key)
        if service is None:
            return Result()
        try:
            await self._publish(service)
        except Conflict:  # the cache was behind: once more from a live read
            try:
                live = await self.client.get(Service, service.metadata.name, service.metadata.namespace)
            except NotFound:
                return Result()
            await self._publish(live)
        except NotFound:
            pass
        return Result()

    async def _publish(self, service: Service) -> None:
        wanted = ingress_for(service, self.nodes.items())
        if service.status.load_balancer.ingress == wanted:
            return
        status = msgspec.structs.replace(service.status, load_balancer=LoadBalancerStatus(ingress=wanted))
        await self.client.update_status(msgspec.structs.replace(service, status=status))
        shown = ", ".join(i.ip for i in wanted) or "none"
        log.info("service %s: load balancer ingress %s", key_of(service), shown)


def published_keys(services: Informer[Service]) -> Callable[[Resource], list[str]]:
    """Map a Node to every Service whose ingress it may change: those of type LoadBalancer,
    and those still publishing addresses."""

    def keys(obj: Resource) -> list[str]:
        return [
            key_of(s)
            for s in services.items()
            if s.spec.type == "LoadBalancer" or s.status.load_balancer.ingress
        ]

    return keys


def service_lb_controller(
    client: Client, services: Informer[Service], nodes: Informer[Node], *, workers: int = 1
) -> Controller:
    controller = Controller("servicelb", ServiceLBReconciler(client, services, nodes), workers=workers)
    controller.watch(services)
    controller.watch(nodes, published_keys(services))
    return controller
