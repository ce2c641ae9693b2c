"""What a question's name asks for inside the cluster domain (pure).

The names Kubernetes' DNS specification defines, below the cluster domain (`cluster.local`):

    <svc>.<ns>.svc                   a Service
    <hostname>.<svc>.<ns>.svc        one endpoint of a headless Service (a pod's hostname.subdomain)
    _<port>._<proto>.<svc>.<ns>.svc  a named port of a Service (SRV)

and the names above them (`svc`, `<ns>.svc`, `_<proto>.<svc>.<ns>.svc`), which exist as empty
non-terminals when something exists below them. Anything else inside the domain does not exist
(pod records, `<ip>.<ns>.pod`, are not served). Names compare without regard to ASCII case.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.exception
import dns.name

DEFAULT_DOMAIN = "cluster.local"


def zone_of(domain: str) -> dns.name.Name:
    """The cluster domain as an absolute name; ValueError if it is not one."""
    try:
        zone = dns.name.from_text(domain)
    except dns.exception.DNSException as err:
        raise ValueError(f"cluster domain {domain!r}: {err}") from None
    if zone == dns.name.root or len(domain.strip(".")) == 0:
        raise ValueError("the cluster domain cannot be the root")
    return zone


@dataclass(frozen=True)
class Outside:
    """Not below the cluster domain: not ours to answer."""


@dataclass(frozen=True)
class Apex:
    """The cluster domain itself."""


@dataclass(frozen=True)
class ServicesRoot:
    """`svc.<domain>`."""


@dataclass(frozen=True)
class Namespace:
    namespace: str


@dataclass(frozen=True)
class ServiceName:
    namespace: str
    service: str


@dataclass(frozen=True)
class EndpointName:
    namespace: str
    service: str
    hostname: str


@dataclass(frozen=True)
class ProtocolName:
    """`_<proto>.<svc>.<ns>.svc`: the parent of a Service's SRV names."""

    namespace: str
    service: str
    protocol: str  # TCP or UDP, as Services spell it


@dataclass(frozen=True)
class PortName:
    namespace: str
    service: str
    port: str
    protocol: str


@dataclass(frozen=True)
class Unknown:
    """Inside the domain, but no name Kubernetes defines."""


Parsed = (
    Outside | Apex | ServicesRoot | Namespace | ServiceName | EndpointName | ProtocolName | PortName | Unknown
)

PROTOCOLS = {"_tcp": "TCP", "_udp": "UDP"}


def parse(name: dns.name.Name, zone: dns.name.Name) -> Parsed:
    if not name.is_subdomain(zone):
        return Outside()
    # latin-1 maps every byte, so no label fails to decode; one that is not ASCII matches nothing.
    labels = [label.lower().decode("latin-1") for label in name.relativize(zone).labels]
    if not labels:
        return Apex()
    if labels[-1] != "svc":
        return Unknown()
    match labels[:-1]:
        case []:
            return ServicesRoot()
        case [ns]:
            return Namespace(ns)
        case [svc, ns]:
            return ServiceName(ns, svc)
        case [proto, svc, ns] if proto.startswith("_"):
            return ProtocolName(ns, svc, PROTOCOLS[proto]) if proto in PROTOCOLS else Unknown()
        case [hostname, svc, ns]:
            return EndpointName(ns, svc, hostname)
        case [port, proto, svc, ns] if port.startswith("_") and len(port) > 1 and proto in PROTOCOLS:
            return PortName(ns, svc, port[1:], PROTOCOLS[proto])
    return Unknown()


def service_name(namespace: str, service: str, zone: dns.name.Name) -> dns.name.Name:
    return dns.name.Name((service.encode(), namespace.encode(), b"svc")).concatenate(zone)


def endpoint_label(hostname: str, ip: str) -> str:
    """An endpoint's own label: its hostname, or (as CoreDNS does) its address with dashes."""
    return hostname or ip.replace(".", "-").replace(":", "-")
