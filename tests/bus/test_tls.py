"""TLS to NATS end to end: files from bus.tlsfiles, a real nats-server that requires TLS and
client certificates (its config includes the generated fragment), an API service and the CLI
connecting over it, and the clear refusals of clients that do not fit."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from bus import natsserver, tlsfiles
from bus.client import Client
from bus.connection import Credentials, connect, discover, link
from bus.errors import BadRequest, Unavailable
from bus.meta import ObjectMeta
from bus.resources import Namespace
from bus.tlsclient import TlsOptions
from tests.cli.conftest import steer_command
from tests.conftest import start_service


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tlsfiles.TlsFiles:
    return tlsfiles.make_tls(tmp_path_factory.mktemp("tls") / "pki", ["api", "cli"], hosts=["nats.example"])


def tls_config(directory: Path, fragment: Path, extra: str = "") -> Path:
    """The repository's nats.conf plus an include of `fragment` (nats-server resolves an include
    relative to the including file, so the path is made relative)."""
    config = directory / "server.conf"
    include = os.path.relpath(fragment, directory)
    config.write_text(f'{natsserver.REPO_CONF.read_text()}\ninclude "{include}"\n{extra}')
    return config


@pytest.fixture(scope="module")
def tls_server(pki: tlsfiles.TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("tls-nats")
    assert pki.server_fragment is not None
    server = natsserver.start(data, config=tls_config(data, pki.server_fragment), log_file=data / "nats.log")
    yield server.url
    server.stop()


def client_options(pki: tlsfiles.TlsFiles, identity: str = "api") -> TlsOptions:
    pair = pki.clients[identity]
    return TlsOptions(str(pki.ca.cert), str(pair.cert), str(pair.key))


@pytest.fixture(scope="module")
def tls_api(
    tls_server: str, pki: tlsfiles.TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    options = client_options(pki)
    args = ["--tls-ca", options.ca_file, "--tls-cert", options.cert_file, "--tls-key", options.key_file]
    log = tmp_path_factory.mktemp("tls-api") / "api.log"
    api = start_service("services.api", "--nats", tls_server, *args, log=log)  # type: ignore[arg-type]
    try:
        asyncio.run(_wait_for_api(tls_server, options))
        yield
    finally:
        api.terminate()
        api.wait(10)


async def _wait_for_api(url: str, options: TlsOptions) -> None:
    nc = await connect(url, name="test-tls-wait", credentials=Credentials(tls=options))
    try:
        async with asyncio.timeout(30):
            while not [c for c in await discover(nc, wait=0.3) if c.name == "steer-api"]:
                pass
    finally:
        await nc.close()


@pytest.fixture
async def tls_client(tls_server: str, pki: tlsfiles.TlsFiles, tls_api: None) -> AsyncIterator[Client]:
    nc = await connect(tls_server, name="test-tls", credentials=Credentials(tls=client_options(pki)))
    yield Client(nc)
    await nc.close()


# -- the files


def test_keys_are_private_and_certificates_name_their_hosts(pki: tlsfiles.TlsFiles) -> None:
    for key in (pki.ca.key, pki.server.key, *(pair.key for pair in pki.clients.values())):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    server = x509.load_pem_x509_certificate(pki.server.cert.read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert "nats.example" in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    client = x509.load_pem_x509_certificate(pki.clients["cli"].cert.read_bytes())
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "cli"
    assert pki.server_fragment is not None and pki.routes_fragment is not None
    assert "verify: true" in pki.server_fragment.read_text()
    assert f'ca_file: "{pki.ca.cert}"' in pki.routes_fragment.read_text()


def test_a_second_call_keeps_the_ca(pki: tlsfiles.TlsFiles, tmp_path: Path) -> None:
    first = tlsfiles.make_tls(tmp_path, ["a"])
    ca = first.ca.cert.read_bytes()
    again = tlsfiles.make_tls(tmp_path, ["b"], verify=False)
    assert again.ca.cert.read_bytes() == ca  # certificates issued before stay valid
    assert set(again.clients) == {"b"} and first.clients["a"].cert.exists()
    assert again.server_fragment is not None and "verify: false" in again.server_fragment.read_text()


def test_an_identity_that_cannot_name_a_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match='identity "../x"'):
        tlsfiles.make_tls(tmp_path, ["../x"])


def test_the_routes_fragment_secures_a_cluster(pki: tlsfiles.TlsFiles, tmp_path: Path) -> None:
    """Two servers whose routes use the fragment (verify on both ends) form a cluster: a message
    published on one reaches a subscriber on the other."""
    assert pki.routes_fragment is not None
    ports = [_free_port() for _ in range(2)]
    servers = []
    try:
        for i, port in enumerate(ports):
            directory = tmp_path / f"s{i}"
            (directory / "ports").mkdir(parents=True)
            include = os.path.relpath(pki.routes_fragment, directory)
            config = directory / "server.conf"
            config.write_text(
                f"server_name: s{i}\nlisten: 127.0.0.1:-1\n"
                f'cluster {{\n  name: c\n  listen: 127.0.0.1:{port}\n  include "{include}"\n'
                f"  routes: [nats-route://127.0.0.1:{ports[1 - i]}]\n}}\n"
            )
            args = [natsserver.binary(), "-c", str(config), "--ports_file_dir", str(directory / "ports")]
            log = open(directory / "nats.log", "wb")  # noqa: SIM115 (the child keeps its copy)
            servers.append(subprocess.Popen(args, stdout=log, stderr=log))
            log.close()
        urls = [natsserver.wait_listening(p, tmp_path / f"s{i}") for i, p in enumerate(servers)]
        asyncio.run(_message_crosses(urls))
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(10)


async def _message_crosses(urls: list[str]) -> None:
    a, b = [await connect(url, name="test-route") for url in urls]
    try:
        sub = await b.subscribe("routed")
        async with asyncio.timeout(20):
            while True:  # the route may still be forming: publish until one arrives
                await a.publish("routed", b"hello")
                try:
                    msg = await sub.next_msg(timeout=0.2)
                except Exception:
                    continue
                assert msg.data == b"hello"
                return
    finally:
        await a.close()
        await b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- connecting


async def test_create_and_get_through_an_api_over_tls(tls_client: Client) -> None:
    name = f"tls-{uuid.uuid4().hex[:8]}"
    created = await tls_client.create(Namespace(metadata=ObjectMeta(name=name)))
    got = await tls_client.get(Namespace, name, "")
    assert got.metadata.uid == created.metadata.uid
    assert tls_client.nc.connected_url is not None and tls_client.nc.connected_url.scheme == "tls"


def test_the_cli_over_tls_from_the_environment(
    tls_server: str, pki: tlsfiles.TlsFiles, tls_api: None
) -> None:
    options = client_options(pki, "cli")
    env = {
        **os.environ,
        "STEER_NATS": tls_server,
        "STEER_TLS_CA": options.ca_file or "",
        "STEER_TLS_CERT": options.cert_file or "",
        "STEER_TLS_KEY": options.key_file or "",
    }
    command = [*steer_command(), "get", "namespaces", "-o", "name"]
    listed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "namespace/default" in listed.stdout.split()
    env.pop("STEER_TLS_CA")
    refused = subprocess.run(
        [*steer_command(), "get", "namespaces"], capture_output=True, text=True, env=env, timeout=60
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: cannot connect to NATS at tls://"), refused.stderr
    assert "certificate verify failed" in refused.stderr and "Traceback" not in refused.stderr


async def test_a_client_without_the_ca_is_told_and_does_not_retry(
    tls_server: str, pki: tlsfiles.TlsFiles
) -> None:
    options = client_options(pki)
    without_ca = TlsOptions(None, options.cert_file, options.key_file)
    # A service (wait=True) retries while no server answers; a certificate that does not verify
    # is no such case: it gives up at once instead of knocking forever.
    async with asyncio.timeout(10):
        with pytest.raises(Unavailable) as refused:
            await connect(tls_server, name="test-tls", credentials=Credentials(tls=without_ca), wait=True)
    assert "certificate verify failed" in refused.value.message
    assert "--tls-ca" in refused.value.message


async def test_a_client_without_a_certificate_is_told(tls_server: str, pki: tlsfiles.TlsFiles) -> None:
    with pytest.raises(Unavailable) as refused:
        await connect(tls_server, name="test-tls", credentials=Credentials(tls=TlsOptions(str(pki.ca.cert))))
    assert "requires a client certificate" in refused.value.message, refused.value.message


async def test_a_plain_client_is_refused(tls_server: str) -> None:
    plain = tls_server.replace("tls://", "nats://")
    with pytest.raises(Unavailable) as refused:
        await connect(plain, name="test-plain")
    assert "the server requires TLS" in refused.value.message, refused.value.message
    # And one that speaks the protocol in plain text whatever the server says is turned away.
    host, port = plain.removeprefix("nats://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        info = await reader.readline()
        assert b'"tls_required":true' in info
        writer.write(b'CONNECT {"verbose":false}\r\nPING\r\n')
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(1024), timeout=10)
        assert b"PONG" not in answer
    finally:
        writer.close()


async def test_tls_asked_of_a_plain_server_sends_nothing_in_clear(
    nats_url: str, pki: tlsfiles.TlsFiles
) -> None:
    with pytest.raises(Unavailable, match="does not require TLS"):
        await connect(nats_url, name="test-tls", credentials=Credentials(tls=client_options(pki)))


async def test_unusable_files_are_named(tls_server: str, pki: tlsfiles.TlsFiles, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(BadRequest, match=f"cannot use {missing} as a TLS CA"):
        await connect(tls_server, name="t", credentials=Credentials(tls=TlsOptions(missing)))
    with pytest.raises(BadRequest, match="--tls-cert and --tls-key go together"):
        await connect(tls_server, name="t", credentials=Credentials(tls=TlsOptions(None, str(pki.ca.cert))))


async def test_a_tls_connection_survives_its_server_restarting(
    pki: tlsfiles.TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The handshake step the connection overrides serves reconnects too: after a restart of the
    server the same connection is back, over TLS, and carries messages."""
    data = tmp_path_factory.mktemp("tls-restart")
    assert pki.server_fragment is not None
    config = tls_config(data, pki.server_fragment)
    server = await asyncio.to_thread(natsserver.start, data, config=config, log_file=data / "nats.log")
    try:
        nc = await connect(server.url, name="test-tls", credentials=Credentials(tls=client_options(pki)))
        try:
            reconnected = asyncio.Event()
            link(nc).on_reconnect(reconnected.set)
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start_again)
            async with asyncio.timeout(20):
                await reconnected.wait()
            sub = await nc.subscribe("after.restart")
            await nc.publish("after.restart", b"again")
            assert (await sub.next_msg(timeout=5)).data == b"again"
            assert nc.connected_url is not None and nc.connected_url.scheme == "tls"
        finally:
            await nc.close()
    finally:
        server.stop()
