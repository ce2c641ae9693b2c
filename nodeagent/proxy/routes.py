"""What the proxy should serve: from Services and their Endpoints to listening ports and backends.

Pure logic, no I/O. Every TCP port of every Service (and its nodePort, for types NodePort and
LoadBalancer) is a route on the node's address; its backends are the ready addresses of the
Service's Endpoints whose port has the Service port's name (the endpoints controller names
Endpoints ports after Service ports and gives the pod's host port). Services share the node's
address, so two of them may want the same port: the oldest Service gets it and the others are
reported as conflicts. Ports outside 1-65535 and addresses that are not IP addresses are left
out (the API should refuse them, but the proxy never trusts that what it is fed can be bound
or dialled).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bus.resources import Endpoints, Service
from bus.resources.networking import NODE_PORT_TYPES, ServicePort

ServiceKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True, order=True)
class Backend:
    """One ready endpoint: where to connect, and the pod behind it."""

    ip: str
    port: int
    pod: str = ""
    pod_uid: str = ""

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class PoolKey:
    """One Service port: the unit that shares backends and balancing state."""

    namespace: str
    service: str
    port_name: str

    @property
    def service_key(self) -> ServiceKey:
        return self.namespace, self.service

    def __str__(self) -> str:
        port = f":{self.port_name}" if self.port_name else ""
        return f"{self.namespace}/{self.service}{port}"


@dataclass(frozen=True)
class Route:
    """Listen on `port` and forward to the backends of `pool`."""

    port: int
    pool: PoolKey
    backends: tuple[Backend, ...]


def backends_of(port: ServicePort, endpoints: Endpoints | None) -> tuple[Backend, ...]:
    """The ready endpoints of one Service port, in a stable order (round robin follows it)."""
    if endpoints is None:
        return ()
    found: set[Backend] = set()
    for subset in endpoints.subsets:
        for endpoint_port in subset.ports:
            if endpoint_port.name != port.name or endpoint_port.protocol != "TCP":
                continue
            if not valid_port(endpoint_port.port):
                continue
            for address in subset.addresses:
                if not is_ip(address.ip):  # never a name to look up, nor junk to connect to
                    continue
                ref = address.target_ref
                found.add(
                    Backend(
                        ip=address.ip,
                        port=endpoint_port.port,
                        pod=ref.name if ref is not None else "",
                        pod_uid=ref.uid if ref is not None else "",
                    )
                )
    return tuple(sorted(found, key=lambda b: (b.pod, b.ip, b.port)))


def routes(services: Iterable[Service], endpoints: Mapping[ServiceKey, Endpoints]) -> dict[int, list[Route]]:
    """Every port some Service wants, with the routes that want it, oldest Service first."""
    wanted: dict[int, list[Route]] = {}
    for service in sorted(services, key=_age):
        key = (service.metadata.namespace, service.metadata.name)
        for port in service.spec.ports:
            if port.protocol != "TCP":  # a TCP proxy: UDP ports are not served
                continue
            pool = PoolKey(key[0], key[1], port.name)
            backends = backends_of(port, endpoints.get(key))
            listen = [port.port]
            if service.spec.type in NODE_PORT_TYPES and port.node_port:
                listen.append(port.node_port)
            for number in filter(valid_port, listen):
                wanted.setdefault(number, []).append(Route(number, pool, backends))
    return wanted


def valid_port(number: int) -> bool:
    return 1 <= number <= 65535


def is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _age(service: Service) -> tuple[str, str, str]:
    meta = service.metadata
    created = meta.creation_timestamp.isoformat() if meta.creation_timestamp else ""
    return created, meta.namespace, meta.name
