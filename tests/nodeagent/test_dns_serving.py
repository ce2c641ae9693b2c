"""The DNS server on a loopback address, asked with dnspython's own client over UDP and TCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest

from nodeagent.dns import Snapshot, Source, listening, serve
from nodeagent.dns.serving import MAX_CONNECTIONS
from tests.nodeagent.dnscluster import cluster, headless_of

HOST = "127.0.0.1"
TIMEOUT = 5.0


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async with listening(cluster(), HOST, 0) as bound:
        yield bound


async def ask(
    port: int, name: str, rdtype: str = "A", *, tcp: bool = False, query: dns.message.Message | None = None
) -> dns.message.Message:
    query = query or dns.message.make_query(name, rdtype)
    if tcp:
        return await dns.asyncquery.tcp(query, HOST, port=port, timeout=TIMEOUT)
    return await dns.asyncquery.udp(query, HOST, port=port, timeout=TIMEOUT)


def records(message: dns.message.Message) -> list[str]:
    return sorted(rdata.to_text() for rrset in message.answer for rdata in rrset)


TRANSPORTS = pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])

CASES = [
    ("web.default.svc.cluster.local", "A", dns.rcode.NOERROR, ["10.96.0.10"]),
    (
        "_http._tcp.web.default.svc.cluster.local",
        "SRV",
        dns.rcode.NOERROR,
        ["0 100 80 web.default.svc.cluster.local."],
    ),
    ("db.default.svc.cluster.local", "A", dns.rcode.NOERROR, ["10.244.1.5", "10.244.1.7", "10.244.2.6"]),
    ("db-0.db.default.svc.cluster.local", "A", dns.rcode.NOERROR, ["10.244.1.5"]),
    ("empty.default.svc.cluster.local", "A", dns.rcode.NOERROR, []),
    ("web.default.svc.cluster.local", "AAAA", dns.rcode.NOERROR, []),
    ("missing.default.svc.cluster.local", "A", dns.rcode.NXDOMAIN, []),
    ("example.com", "A", dns.rcode.REFUSED, []),
]


@TRANSPORTS
@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "expected"), CASES, ids=[f"{c[0]} {c[1]}" for c in CASES]
)
async def test_answers(
    port: int, tcp: bool, name: str, rdtype: str, rcode: dns.rcode.Rcode, expected: list[str]
) -> None:
    got = await ask(port, name, rdtype, tcp=tcp)
    assert (got.rcode(), records(got)) == (rcode, expected)
    if rcode != dns.rcode.REFUSED:
        assert got.flags & dns.flags.AA
        assert all(rrset.ttl == 5 for rrset in [*got.answer, *got.authority])
    if not expected and rcode != dns.rcode.REFUSED:
        assert [rrset.rdtype for rrset in got.authority] == [dns.rdatatype.SOA]


async def test_srv_answers_carry_the_targets_addresses(port: int) -> None:
    got = await ask(port, "_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert sorted(f"{rrset.name} {rdata}" for rrset in got.additional for rdata in rrset) == [
        "10-244-1-7.db.default.svc.cluster.local. 10.244.1.7",
        "db-0.db.default.svc.cluster.local. 10.244.1.5",
        "db-1.db.default.svc.cluster.local. 10.244.2.6",
    ]


GARBAGE = [
    b"",
    b"\x00",
    b"\x12\x34\x01\x00\x00\x01",
    bytes(range(256)),
    dns.message.make_response(dns.message.make_query("web.default.svc.cluster.local", "A")).to_wire(),
]


class Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.received.put_nowait(data)


async def test_garbage_over_udp_is_dropped_and_the_server_keeps_answering(port: int) -> None:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(Datagrams, remote_addr=(HOST, port))
    try:
        for wire in GARBAGE:
            transport.sendto(wire)
        query = dns.message.make_query("web.default.svc.cluster.local", "A")
        transport.sendto(query.to_wire())
        async with asyncio.timeout(TIMEOUT):
            first = await client.received.get()  # the garbage, sent before, got nothing back
        assert dns.message.from_wire(first).id == query.id
        assert client.received.empty()
    finally:
        transport.close()
    assert records(await ask(port, "web.default.svc.cluster.local")) == ["10.96.0.10"]


@pytest.mark.parametrize("wire", GARBAGE[1:], ids=["nul", "short header", "noise", "a response"])
async def test_garbage_over_tcp_closes_the_connection_and_the_server_keeps_answering(
    port: int, wire: bytes
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        # one good question first: the same connection answers it, then ends at the garbage
        good = dns.message.make_query("web.default.svc.cluster.local", "A")
        for frame in (good.to_wire(), wire):
            writer.write(len(frame).to_bytes(2, "big") + frame)
        async with asyncio.timeout(TIMEOUT):
            size = int.from_bytes(await reader.readexactly(2), "big")
            assert dns.message.from_wire(await reader.readexactly(size)).id == good.id
            assert await reader.read() == b""  # closed by the server
    finally:
        writer.close()
    assert records(await ask(port, "web.default.svc.cluster.local", tcp=True)) == ["10.96.0.10"]


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str
) -> dns.message.Message:
    query = dns.message.make_query(name, "A").to_wire()
    writer.write(len(query).to_bytes(2, "big") + query)
    async with asyncio.timeout(TIMEOUT):
        size = int.from_bytes(await reader.readexactly(2), "big")
        return dns.message.from_wire(await reader.readexactly(size))


async def test_a_tcp_connection_answers_several_questions(port: int) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        names = ["web.default.svc.cluster.local", "plain.default.svc.cluster.local"]
        queries = [dns.message.make_query(name, "A") for name in names]
        writer.write(b"".join(len(w).to_bytes(2, "big") + w for w in (q.to_wire() for q in queries)))
        async with asyncio.timeout(TIMEOUT):
            for query, address in zip(queries, ["10.96.0.10", "10.96.0.11"], strict=True):
                size = int.from_bytes(await reader.readexactly(2), "big")
                got = dns.message.from_wire(await reader.readexactly(size))
                assert (got.id, records(got)) == (query.id, [address])
    finally:
        writer.close()


async def test_a_large_answer_is_truncated_over_udp_and_whole_over_tcp() -> None:
    async with listening(headless_of(60), HOST, 0) as port:
        query = dns.message.make_query("many.default.svc.cluster.local", "A", use_edns=False)
        truncated = await ask(port, "", query=query)
        assert truncated.flags & dns.flags.TC and truncated.answer == []
        whole, used_tcp = await dns.asyncquery.udp_with_fallback(query, HOST, port=port, timeout=TIMEOUT)
        assert used_tcp and len(records(whole)) == 60 and not whole.flags & dns.flags.TC


async def test_connections_over_the_limit_are_closed_and_udp_still_answers() -> None:
    async with listening(cluster(), HOST, 0) as port:
        held = [await asyncio.open_connection(HOST, port) for _ in range(MAX_CONNECTIONS)]
        try:
            for held_reader, held_writer in held:  # each answers: the server counts it
                assert records(await exchange(held_reader, held_writer, "web.default.svc.cluster.local")) == [
                    "10.96.0.10"
                ]
            reader, writer = await asyncio.open_connection(HOST, port)
            async with asyncio.timeout(TIMEOUT):
                assert await reader.read() == b""
            writer.close()
            assert records(await ask(port, "web.default.svc.cluster.local")) == ["10.96.0.10"]
        finally:
            for _, w in held:
                w.close()


async def test_stopping_closes_open_connections_and_frees_the_port() -> None:
    async with listening(cluster(), HOST, 0) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        await ask(port, "web.default.svc.cluster.local", tcp=True)
    try:
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read() == b""
    finally:
        writer.close()
    async with listening(cluster(), HOST, port):  # a server started again takes the same port
        assert records(await ask(port, "web.default.svc.cluster.local", tcp=True)) == ["10.96.0.10"]


async def test_serve_signals_ready_once_answering_and_stops_when_cancelled() -> None:
    source: Source = Snapshot(services=cluster().services())
    async with listening(source, HOST, 0) as port:
        pass  # a port free for both UDP and TCP
    ready = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        server = tasks.create_task(serve(source, HOST, port, domain="steer.internal", ready=ready))
        async with asyncio.timeout(TIMEOUT):
            await ready.wait()
        got = await ask(port, "web.default.svc.steer.internal")
        assert records(got) == ["10.96.0.10"]
        assert (await ask(port, "web.default.svc.cluster.local", tcp=True)).rcode() == dns.rcode.REFUSED
        server.cancel()
    async with listening(source, HOST, port):  # free again
        pass


async def test_an_address_in_use_is_an_error() -> None:
    async with listening(cluster(), HOST, 0) as port:
        with pytest.raises(OSError):
            async with listening(cluster(), HOST, port):
                pass
