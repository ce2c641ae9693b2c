"""The answers of cluster DNS, from a fixed set of Services and Endpoints (see dnscluster.py)."""

from __future__ import annotations

import dns.name
import dns.rcode
import dns.rdatatype
import msgspec
import pytest

from bus.meta import ObjectMeta
from bus.resources import Endpoints, Service
from nodeagent.dns import MirrorSource
from nodeagent.dns.names import zone_of
from nodeagent.dns.records import TTL, Answer, answer
from nodeagent.proxy.mirror import Mirror
from tests.nodeagent.dnscluster import cluster

ZONE = zone_of("cluster.local")
NOERROR, NXDOMAIN, REFUSED = dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED
SOA_TEXT = "ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"


def ask(name: str, rdtype: str = "A", *, zone: dns.name.Name = ZONE) -> Answer:
    return answer(dns.name.from_text(name), dns.rdatatype.from_text(rdtype), cluster(), zone=zone)


def texts(rrsets: list[dns.rrset.RRset]) -> list[str]:
    return sorted(rdata.to_text() for rrset in rrsets for rdata in rrset)


CASES = [
    # Services with a ClusterIP: their address, never their endpoints'
    ("web.default.svc.cluster.local", "A", NOERROR, ["10.96.0.10"]),
    ("WEB.Default.SVC.Cluster.Local.", "A", NOERROR, ["10.96.0.10"]),
    ("web.other.svc.cluster.local", "A", NOERROR, ["10.96.0.20"]),
    ("plain.default.svc.cluster.local", "A", NOERROR, ["10.96.0.11"]),
    ("pending.default.svc.cluster.local", "A", NOERROR, []),  # no ClusterIP yet
    # a name that exists, asked for a type it has none of: empty, not NXDOMAIN
    ("web.default.svc.cluster.local", "AAAA", NOERROR, []),
    ("web.default.svc.cluster.local", "TXT", NOERROR, []),
    ("db.default.svc.cluster.local", "AAAA", NOERROR, []),
    # headless: every ready address; none ready (or no Endpoints at all) is an empty answer
    ("db.default.svc.cluster.local", "A", NOERROR, ["10.244.1.5", "10.244.1.7", "10.244.2.6"]),
    ("empty.default.svc.cluster.local", "A", NOERROR, []),
    ("lonely.default.svc.cluster.local", "A", NOERROR, []),
    # endpoints of a headless Service by hostname (hostname.subdomain) or dashed address
    ("db-0.db.default.svc.cluster.local", "A", NOERROR, ["10.244.1.5"]),
    ("db-1.db.default.svc.cluster.local", "A", NOERROR, ["10.244.2.6"]),
    ("10-244-1-7.db.default.svc.cluster.local", "A", NOERROR, ["10.244.1.7"]),
    ("db-0.db.default.svc.cluster.local", "AAAA", NOERROR, []),
    ("db-2.db.default.svc.cluster.local", "A", NXDOMAIN, []),  # not ready
    ("db-9.db.default.svc.cluster.local", "A", NXDOMAIN, []),
    ("10-244-1-9.web.default.svc.cluster.local", "A", NXDOMAIN, []),  # web has a ClusterIP
    # SRV of named ports: the Service's name at the Service port, or each endpoint at its port
    ("_http._tcp.web.default.svc.cluster.local", "SRV", NOERROR, ["0 100 80 web.default.svc.cluster.local."]),
    ("_dns._udp.web.default.svc.cluster.local", "SRV", NOERROR, ["0 100 53 web.default.svc.cluster.local."]),
    (
        "_pg._tcp.db.default.svc.cluster.local",
        "SRV",
        NOERROR,
        [
            "0 33 5432 10-244-1-7.db.default.svc.cluster.local.",
            "0 33 5432 db-0.db.default.svc.cluster.local.",
            "0 33 5432 db-1.db.default.svc.cluster.local.",
        ],
    ),
    (
        "web.default.svc.cluster.local",
        "SRV",
        NOERROR,
        ["0 50 53 web.default.svc.cluster.local.", "0 50 80 web.default.svc.cluster.local."],
    ),
    ("_http._tcp.empty.default.svc.cluster.local", "SRV", NOERROR, []),
    ("_http._tcp.web.default.svc.cluster.local", "A", NOERROR, []),
    ("_http._udp.web.default.svc.cluster.local", "SRV", NXDOMAIN, []),  # http is TCP
    ("_ftp._tcp.web.default.svc.cluster.local", "SRV", NXDOMAIN, []),
    ("_http._sctp.web.default.svc.cluster.local", "SRV", NXDOMAIN, []),
    ("_http._tcp.missing.default.svc.cluster.local", "SRV", NXDOMAIN, []),
    ("_tcp.web.default.svc.cluster.local", "SRV", NOERROR, []),  # above an SRV name
    ("_udp.plain.default.svc.cluster.local", "SRV", NXDOMAIN, []),  # no named UDP port below
    # unknown names inside the domain
    ("missing.default.svc.cluster.local", "A", NXDOMAIN, []),
    ("web.nowhere.svc.cluster.local", "A", NXDOMAIN, []),
    ("a.b.web.default.svc.cluster.local", "A", NXDOMAIN, []),
    ("10-244-1-5.default.pod.cluster.local", "A", NXDOMAIN, []),
    ("web.cluster.local", "A", NXDOMAIN, []),
    # the names above Services
    ("default.svc.cluster.local", "A", NOERROR, []),
    ("nowhere.svc.cluster.local", "A", NXDOMAIN, []),
    ("svc.cluster.local", "A", NOERROR, []),
    ("cluster.local", "A", NOERROR, []),
    ("cluster.local", "SOA", NOERROR, [SOA_TEXT]),
    # outside the domain: refused, there is no upstream
    ("example.com", "A", REFUSED, []),
    ("local", "A", REFUSED, []),
    ("web.default.svc.cluster.local.example.com", "A", REFUSED, []),
    ("1.0.96.10.in-addr.arpa", "PTR", REFUSED, []),
]


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "expected"), CASES, ids=[f"{c[0]} {c[1]}" for c in CASES]
)
def test_answer(name: str, rdtype: str, rcode: dns.rcode.Rcode, expected: list[str]) -> None:
    found = ask(name, rdtype)
    assert (found.rcode, texts(found.answer)) == (rcode, sorted(expected))


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        ("missing.default.svc.cluster.local", "A"),  # NXDOMAIN
        ("web.default.svc.cluster.local", "AAAA"),  # empty
        ("empty.default.svc.cluster.local", "A"),
    ],
)
def test_negative_answers_carry_the_soa_so_they_are_cached_five_seconds(name: str, rdtype: str) -> None:
    found = ask(name, rdtype)
    assert texts(found.authority) == [SOA_TEXT]
    assert [rrset.ttl for rrset in found.authority] == [TTL]
    assert found.authoritative


def test_records_live_five_seconds_and_answer_the_name_asked() -> None:
    found = ask("Web.Default.svc.cluster.local")
    assert [(rrset.name.to_text(), rrset.ttl) for rrset in found.answer] == [
        ("Web.Default.svc.cluster.local.", 5)
    ]
    assert TTL == 5


@pytest.mark.parametrize(
    ("name", "additional"),
    [
        ("_http._tcp.web.default.svc.cluster.local", ["web.default.svc.cluster.local. A 10.96.0.10"]),
        (
            "_pg._tcp.db.default.svc.cluster.local",
            [
                "10-244-1-7.db.default.svc.cluster.local. A 10.244.1.7",
                "db-0.db.default.svc.cluster.local. A 10.244.1.5",
                "db-1.db.default.svc.cluster.local. A 10.244.2.6",
            ],
        ),
    ],
)
def test_srv_answers_give_the_targets_addresses(name: str, additional: list[str]) -> None:
    found = ask(name, "SRV")
    got = sorted(
        f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rdata}"
        for rrset in found.additional
        for rdata in rrset
    )
    assert got == additional


def test_refused_answers_are_not_authoritative() -> None:
    assert not ask("example.com").authoritative


def test_the_cluster_domain_is_configurable() -> None:
    zone = zone_of("steer.internal")
    assert texts(ask("web.default.svc.steer.internal", zone=zone).answer) == ["10.96.0.10"]
    assert ask("web.default.svc.cluster.local", zone=zone).rcode == REFUSED


@pytest.mark.parametrize("domain", ["", ".", "a..b"])
def test_a_cluster_domain_must_be_a_name_below_the_root(domain: str) -> None:
    with pytest.raises(ValueError):
        zone_of(domain)


def test_the_service_proxys_mirrors_are_a_source() -> None:
    services: Mirror[Service] = Mirror()
    endpoints: Mirror[Endpoints] = Mirror()
    source = MirrorSource(services, endpoints)
    snapshot = cluster()
    for service in snapshot.services():
        services.put(msgspec.structs.replace(service, metadata=revised(service.metadata)))
    for name in ("db", "web"):
        found = snapshot.endpoints("default", name)
        assert found is not None
        endpoints.put(msgspec.structs.replace(found, metadata=revised(found.metadata)))

    def ask_mirrors(name: str) -> list[str]:
        return texts(answer(dns.name.from_text(name), dns.rdatatype.A, source, zone=ZONE).answer)

    assert ask_mirrors("web.default.svc.cluster.local") == ["10.96.0.10"]
    assert ask_mirrors("db-0.db.default.svc.cluster.local") == ["10.244.1.5"]
    assert (
        answer(dns.name.from_text("default.svc.cluster.local"), dns.rdatatype.A, source, zone=ZONE).rcode
        == NOERROR
    )
    web = services.get(("default", "web"))
    assert web is not None and services.delete(web)
    assert answer(
        dns.name.from_text("web.default.svc.cluster.local"), dns.rdatatype.A, source, zone=ZONE
    ).rcode == (NXDOMAIN)


def revised(meta: ObjectMeta) -> ObjectMeta:
    return msgspec.structs.replace(meta, resource_version="7")
