"""From a query on the wire to the response on the wire (pure: no I/O; dnspython does the format).

What comes from a pod is untrusted. Bytes that do not parse as a DNS query, and responses (a
message with the QR bit, which answering could turn into a loop), get no answer at all: `None`,
and the server drops the datagram or closes the connection. Everything that parses gets an
answer: NOTIMP for opcodes other than QUERY, FORMERR for other than exactly one question,
REFUSED for classes other than IN and for zone transfers, BADVERS for EDNS versions above 0, and
SERVFAIL when answering the question fails, whatever the reason.

Over UDP a response must fit the size the client can take: 512 bytes without EDNS, the payload
size it advertises (at most ours, 1232 bytes, the DNS flag day's figure) with it. A response too
large loses its additional section first (those records are optional); if still too large, it is
sent empty with the TC bit set, and the client asks again over TCP, where 65535 bytes fit.
"""

from __future__ import annotations

import logging
from typing import Literal

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from nodeagent.dns.records import answer
from nodeagent.dns.source import Source

log = logging.getLogger(__name__)

Transport = Literal["udp", "tcp"]

PLAIN_UDP_SIZE = 512
OUR_UDP_PAYLOAD = 1232
TCP_SIZE = 65535


def respond(wire: bytes, source: Source, *, zone: dns.name.Name, transport: Transport) -> bytes | None:
    """The response to the query `wire`, or None when `wire` is no query to answer."""
    try:
        query = dns.message.from_wire(wire)
    except Exception as err:  # whatever a malformed packet makes the parser raise
        log.debug("dropping a malformed DNS message (%s)", err)
        return None
    if query.flags & dns.flags.QR:
        return None
    response = dns.message.make_response(query, our_payload=OUR_UDP_PAYLOAD)
    response.flags &= ~dns.flags.AA
    if query.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
    elif query.edns > 0:
        response.set_rcode(dns.rcode.BADVERS)
    elif len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
    else:
        _answer(query, response, source, zone)
    return _to_wire(response, _limit(query, transport))


def _answer(
    query: dns.message.Message, response: dns.message.Message, source: Source, zone: dns.name.Name
) -> None:
    question = query.question[0]
    if question.rdclass != dns.rdataclass.IN or question.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
        response.set_rcode(dns.rcode.REFUSED)
        return
    try:
        found = answer(question.name, question.rdtype, source, zone=zone)
    except Exception:  # a question must never cost the server: it gets SERVFAIL
        log.exception("cannot answer %s %s", question.name, dns.rdatatype.to_text(question.rdtype))
        response.set_rcode(dns.rcode.SERVFAIL)
        return
    response.set_rcode(found.rcode)
    if found.authoritative:
        response.flags |= dns.flags.AA
    response.answer.extend(found.answer)
    response.authority.extend(found.authority)
    response.additional.extend(found.additional)


def _limit(query: dns.message.Message, transport: Transport) -> int:
    if transport == "tcp":
        return TCP_SIZE
    if query.edns < 0:
        return PLAIN_UDP_SIZE
    return max(PLAIN_UDP_SIZE, min(query.payload, OUR_UDP_PAYLOAD))


def _to_wire(response: dns.message.Message, limit: int) -> bytes:
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        pass
    response.additional.clear()
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        pass
    response.answer.clear()
    response.authority.clear()
    response.flags |= dns.flags.TC
    return response.to_wire(max_size=limit)
