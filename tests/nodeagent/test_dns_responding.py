"""Query bytes to response bytes: what is dropped, what gets an error code, and what is truncated."""

from __future__ import annotations

from collections.abc import Iterable

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from bus.resources import Endpoints, Service
from nodeagent.dns.names import zone_of
from nodeagent.dns.responding import Transport, respond
from nodeagent.dns.source import Source
from tests.nodeagent.dnscluster import cluster, headless_of

ZONE = zone_of("cluster.local")


def reply(
    query: dns.message.Message | bytes, source: Source | None = None, transport: Transport = "udp"
) -> dns.message.Message | None:
    wire = query if isinstance(query, bytes) else query.to_wire()
    out = respond(wire, source or cluster(), zone=ZONE, transport=transport)
    return None if out is None else dns.message.from_wire(out)


def answered(
    query: dns.message.Message, source: Source | None = None, transport: Transport = "udp"
) -> dns.message.Message:
    got = reply(query, source, transport)
    assert got is not None
    return got


def q(
    name: str = "web.default.svc.cluster.local",
    rdtype: str = "A",
    *,
    use_edns: int | bool = False,
    payload: int = 1232,
) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, use_edns=use_edns, payload=payload)


def test_an_answer_echoes_the_question_and_is_authoritative() -> None:
    query = q()
    got = answered(query)
    assert got.id == query.id and got.question == query.question
    assert got.flags & dns.flags.QR and got.flags & dns.flags.AA and got.flags & dns.flags.RD
    assert not got.flags & dns.flags.RA  # no recursion: names outside the domain are refused
    assert [rdata.to_text() for rrset in got.answer for rdata in rrset] == ["10.96.0.10"]


def test_refused_is_not_authoritative() -> None:
    got = answered(q("example.com"))
    assert got.rcode() == dns.rcode.REFUSED and not got.flags & dns.flags.AA


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\x12",
        b"\x12\x34\x01\x00\x00\x01",  # a header cut short
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03web",  # a question cut short
        bytes(range(256)) * 2,
        b"\xff" * 12 + b"\x00" * 40,
    ],
    ids=["empty", "one byte", "short header", "short question", "noise", "counts beyond the data"],
)
def test_bytes_that_are_no_query_get_no_answer(wire: bytes) -> None:
    assert reply(wire) is None


def test_a_response_gets_no_answer() -> None:
    response = dns.message.make_response(q())
    assert reply(response) is None


def test_other_opcodes_are_not_implemented() -> None:
    query = q()
    query.set_opcode(dns.opcode.NOTIFY)
    assert answered(query).rcode() == dns.rcode.NOTIMP


def test_two_questions_are_a_format_error() -> None:
    query = q()
    query.question.append(dns.rrset.RRset(query.question[0].name, dns.rdataclass.IN, dns.rdatatype.AAAA))
    assert answered(query).rcode() == dns.rcode.FORMERR


@pytest.mark.parametrize(
    ("rdtype", "rdclass"), [("A", "CH"), ("AXFR", "IN"), ("IXFR", "IN")], ids=["chaos", "axfr", "ixfr"]
)
def test_other_classes_and_zone_transfers_are_refused(rdtype: str, rdclass: str) -> None:
    query = dns.message.make_query("cluster.local", rdtype, rdclass)
    assert answered(query).rcode() == dns.rcode.REFUSED


def test_an_edns_version_above_zero_is_badvers() -> None:
    got = answered(q(use_edns=1))
    assert got.rcode() == dns.rcode.BADVERS


class Broken:
    """A source that fails whatever it is asked."""

    def service(self, namespace: str, name: str) -> Service | None:
        raise RuntimeError("cache gone")

    def endpoints(self, namespace: str, name: str) -> Endpoints | None:
        raise RuntimeError("cache gone")

    def services(self) -> Iterable[Service]:
        raise RuntimeError("cache gone")


def test_a_question_that_cannot_be_answered_is_servfail() -> None:
    got = answered(q(), source=Broken())
    assert (got.rcode(), got.answer) == (dns.rcode.SERVFAIL, [])
    assert answered(q("example.com"), source=Broken()).rcode() == dns.rcode.REFUSED  # never asked


def addresses(message: dns.message.Message) -> int:
    return sum(len(rrset) for rrset in message.answer)


@pytest.mark.parametrize(
    ("count", "edns", "transport", "truncated", "records"),
    [
        (25, False, "udp", False, 25),  # 12 + 35 + 25 * 16 = 447 bytes: fits 512
        (40, False, "udp", True, 0),  # 687 bytes: over 512 without EDNS
        (40, True, "udp", False, 40),  # the client takes 1232
        (100, True, "udp", True, 0),
        (100, False, "tcp", False, 100),
        (1000, False, "tcp", False, 1000),
    ],
)
def test_udp_answers_over_the_clients_size_are_truncated(
    count: int, edns: bool, transport: Transport, truncated: bool, records: int
) -> None:
    query = q("many.default.svc.cluster.local", use_edns=0 if edns else False, payload=1232)
    got = answered(query, source=headless_of(count), transport=transport)
    assert (bool(got.flags & dns.flags.TC), addresses(got)) == (truncated, records)
    assert got.rcode() == dns.rcode.NOERROR


def test_the_payload_size_is_at_most_ours() -> None:
    query = q("many.default.svc.cluster.local", use_edns=0, payload=4096)
    got = answered(query, source=headless_of(100))
    assert got.flags & dns.flags.TC  # 100 records take 1647 bytes, over our 1232
    assert got.payload == 1232


def test_the_additional_section_goes_first_and_without_tc() -> None:
    # 7 SRV records (61 bytes each: their targets are not compressed) fit 512 bytes; with the
    # targets' addresses they do not.
    query = q("_http._tcp.many.default.svc.cluster.local", "SRV")
    got = answered(query, source=headless_of(7))
    assert not got.flags & dns.flags.TC
    assert (addresses(got), got.additional) == (7, [])
    full = answered(query, source=headless_of(7), transport="tcp")
    assert sum(len(rrset) for rrset in full.additional) == 7
    assert len(full.to_wire()) > 512
