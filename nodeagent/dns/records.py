"""The answer to one question, from the Services and Endpoints known (pure: no I/O).

As CoreDNS's kubernetes plugin answers:

- `<svc>.<ns>.svc.<domain>` A: the Service's ClusterIP; for a headless Service (`clusterIP:
  None`) every ready address of its Endpoints, and no record at all (NOERROR, not NXDOMAIN: the
  name exists) while none is ready;
- `<hostname>.<svc>.<ns>.svc.<domain>` A, headless Services only: the ready addresses whose
  `hostname` is that label (the endpoints controller sets it for pods whose `spec.subdomain` is the
  Service's name), or whose address with dashes is (`10-244-1-7`);
- `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV, named ports: one record targeting the Service's
  name at the Service port, or, headless, one per ready endpoint targeting its own name at the
  endpoint's port, with the targets' addresses in the additional section. SRV on the Service's
  own name gives the records of every port, as CoreDNS does.

A name that exists but holds no record of the type asked (AAAA in an IPv4 cluster, TXT, ...) is
an empty NOERROR answer; a name inside the domain that does not exist is NXDOMAIN. Both carry the
zone's SOA in the authority section, so resolvers cache the negative answer for the same 5
seconds. Names outside the domain are REFUSED: pods have no route off the machine, so there is
no upstream to forward them to.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

from bus.resources import Endpoints, Service
from bus.resources.networking import EndpointAddress
from nodeagent.dns import names
from nodeagent.dns.source import Source

TTL = 5  # seconds, CoreDNS's default
HEADLESS = "None"
IN = dns.rdataclass.IN
RdataType = dns.rdatatype.RdataType


@dataclass
class Answer:
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    authoritative: bool = True


def answer(qname: dns.name.Name, rdtype: RdataType, source: Source, *, zone: dns.name.Name) -> Answer:
    """The answer to `qname`/`rdtype` (class IN) in the cluster domain `zone`."""
    parsed = names.parse(qname, zone)
    if isinstance(parsed, names.Outside):
        return Answer(rcode=dns.rcode.REFUSED, authoritative=False)
    found = _records(parsed, qname, rdtype, source, zone)
    if found is None:
        return Answer(rcode=dns.rcode.NXDOMAIN, authority=[_soa(zone)])
    if not found.answer:
        found.authority.append(_soa(zone))
    return found


def _records(
    parsed: names.Parsed, qname: dns.name.Name, rdtype: RdataType, source: Source, zone: dns.name.Name
) -> Answer | None:
    """The records of an existing name (maybe none of the type asked), or None: no such name."""
    match parsed:
        case names.Apex():
            return Answer(answer=[_soa(zone)] if rdtype == dns.rdatatype.SOA else [])
        case names.ServicesRoot():
            return Answer()
        case names.Namespace(namespace=ns):
            return Answer() if any(s.metadata.namespace == ns for s in source.services()) else None
        case names.ServiceName(namespace=ns, service=name):
            service = source.service(ns, name)
            if service is None:
                return None
            if rdtype == dns.rdatatype.SRV:
                return _srv(qname, service, source.endpoints(ns, name), zone, port=None)
            return Answer(answer=_addresses(qname, rdtype, _service_addresses(service, source)))
        case names.EndpointName(namespace=ns, service=name, hostname=hostname):
            service = source.service(ns, name)
            if service is None or not _headless(service):
                return None
            ips = [
                a.ip
                for a in _ready(source.endpoints(ns, name))
                if names.endpoint_label(a.hostname, a.ip) == hostname
            ]
            return Answer(answer=_addresses(qname, rdtype, ips)) if ips else None
        case names.ProtocolName(namespace=ns, service=name, protocol=protocol):
            service = source.service(ns, name)
            if service is None or not _named_ports(service, protocol):
                return None
            return Answer()
        case names.PortName(namespace=ns, service=name, port=port, protocol=protocol):
            service = source.service(ns, name)
            if service is None or port not in _named_ports(service, protocol):
                return None
            if rdtype != dns.rdatatype.SRV:
                return Answer()
            return _srv(qname, service, source.endpoints(ns, name), zone, port=(port, protocol))
    return None


def _cluster_ip(service: Service) -> str:
    return str(getattr(service.spec, "cluster_ip", ""))


def _headless(service: Service) -> bool:
    return _cluster_ip(service) == HEADLESS


def _named_ports(service: Service, protocol: str) -> set[str]:
    return {p.name.lower() for p in service.spec.ports if p.name and p.protocol == protocol}


def _ready(endpoints: Endpoints | None) -> list[EndpointAddress]:
    if endpoints is None:
        return []
    return [address for subset in endpoints.subsets for address in subset.addresses]


def _service_addresses(service: Service, source: Source) -> list[str]:
    if _headless(service):
        return [a.ip for a in _ready(source.endpoints(service.metadata.namespace, service.metadata.name))]
    cluster_ip = _cluster_ip(service)
    return [cluster_ip] if cluster_ip else []  # none yet: the name exists, with no address


def _addresses(qname: dns.name.Name, rdtype: RdataType, ips: list[str]) -> list[dns.rrset.RRset]:
    """The A (or AAAA) records among `ips`; addresses that do not parse are left out."""
    rdatas: list[dns.rdata.Rdata] = []
    for ip in ips:
        try:
            parsed = ipaddress.ip_address(ip)
        except ValueError:
            continue
        if rdtype == dns.rdatatype.A and parsed.version == 4:
            rdatas.append(A(IN, dns.rdatatype.A, str(parsed)))
        elif rdtype == dns.rdatatype.AAAA and parsed.version == 6:
            rdatas.append(AAAA(IN, dns.rdatatype.AAAA, str(parsed)))
    return [dns.rrset.from_rdata_list(qname, TTL, rdatas)] if rdatas else []


def _srv(
    qname: dns.name.Name,
    service: Service,
    endpoints: Endpoints | None,
    zone: dns.name.Name,
    *,
    port: tuple[str, str] | None,
) -> Answer:
    """SRV records of the Service's named port `port` (name, protocol), or of every port."""
    ns, name = service.metadata.namespace, service.metadata.name
    own = names.service_name(ns, name, zone)
    targets: list[tuple[int, dns.name.Name, str]] = []  # (port, target, address)
    if _headless(service):
        for subset in endpoints.subsets if endpoints is not None else []:
            for endpoint_port in subset.ports:
                if port is None or (endpoint_port.name.lower(), endpoint_port.protocol) == port:
                    for address in subset.addresses:
                        label = names.endpoint_label(address.hostname, address.ip)
                        target = dns.name.Name((label.encode(),)).concatenate(own)
                        targets.append((endpoint_port.port, target, address.ip))
    else:
        cluster_ip = _cluster_ip(service)
        if cluster_ip:
            for service_port in service.spec.ports:
                if port is None or (service_port.name.lower(), service_port.protocol) == port:
                    targets.append((service_port.port, own, cluster_ip))
    if not targets:
        return Answer()
    weight = max(1, 100 // len(targets))
    records = [SRV(IN, dns.rdatatype.SRV, 0, weight, number, target) for number, target, _ in targets]
    additional: dict[dns.name.Name, list[str]] = {}
    for _, target, ip in targets:
        additional.setdefault(target, []).append(ip)
    return Answer(
        answer=[dns.rrset.from_rdata_list(qname, TTL, records)],
        additional=[
            rrset
            for target, ips in additional.items()
            for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
            for rrset in _addresses(target, rdtype, ips)
        ],
    )


def _soa(zone: dns.name.Name) -> dns.rrset.RRset:
    """The zone's SOA, as CoreDNS words it; its minimum (the negative TTL) is the same 5 seconds."""
    record = SOA(
        IN,
        dns.rdatatype.SOA,
        dns.name.Name((b"ns", b"dns")).concatenate(zone),
        dns.name.Name((b"hostmaster",)).concatenate(zone),
        1,
        7200,
        1800,
        86400,
        TTL,
    )
    return dns.rrset.from_rdata_list(zone, TTL, [record])
