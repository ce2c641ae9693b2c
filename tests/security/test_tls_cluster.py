"""The production shape of the bus: three servers on routes, TLS required on every client
connection and every route, each part under its own credential (`steer credentials init --tls`
makes both). The API serves over it, a server's death is survived, and whoever lacks the CA, a
client certificate or a credential is refused."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bus import tlsfiles
from bus.client import Client
from bus.connection import Credentials, connect
from bus.errors import SteerError
from bus.meta import ObjectMeta
from bus.resources import Namespace
from bus.tlsclient import TlsOptions
from cli import registry
from tests.conftest import start_service, wait_for_components
from tests.natscluster import NatsCluster

NODES = ["node-1"]


@dataclass
class SecureFiles:
    credentials: Path
    tls: tlsfiles.TlsFiles

    def creds(self, identity: str, *, certificate: bool = True, ca: bool = True) -> Credentials:
        pair = self.tls.clients[identity]
        return Credentials(
            creds_file=str(self.credentials / f"{identity}{registry.SUFFIX}"),
            tls=TlsOptions(
                ca_file=str(self.tls.ca.cert) if ca else None,
                cert_file=str(pair.cert) if certificate else None,
                key_file=str(pair.key) if certificate else None,
            ),
        )

    def args(self, identity: str) -> list[str]:
        pair = self.tls.clients[identity]
        return [
            *("--creds", str(self.credentials / f"{identity}{registry.SUFFIX}")),
            *("--tls-ca", str(self.tls.ca.cert), "--tls-cert", str(pair.cert), "--tls-key", str(pair.key)),
        ]


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsCluster, SecureFiles]]:
    root = tmp_path_factory.mktemp("tls-cluster")
    reg, _ = registry.ensure_cluster(root / "credentials", NODES)
    tls = tlsfiles.make_tls(root / "credentials" / "tls", sorted(reg.identities))
    files = SecureFiles(root / "credentials", tls)
    assert files.tls.server_fragment is not None and files.tls.routes_fragment is not None
    with NatsCluster.running(
        root / "nats",
        includes=[reg.authorization_file, files.tls.server_fragment],
        route_includes=[files.tls.routes_fragment],
    ) as cluster:
        args = ["--nats", cluster.urls, "--replicas", "3", *files.args("api")]
        api = start_service("services.api", *args, log=root / "api.log")
        try:
            asyncio.run(wait_for_components(cluster.urls, "steer-api", 1, credentials=files.creds("admin")))
            yield cluster, files
        finally:
            api.terminate()
            try:
                api.wait(10)
            except subprocess.TimeoutExpired:
                api.kill()


async def test_the_api_serves_over_tls_and_survives_a_server(secure: tuple[NatsCluster, SecureFiles]) -> None:
    cluster, files = secure
    nc = await connect(cluster.urls, name="admin", credentials=files.creds("admin"))
    try:
        client = Client(nc)
        await client.create(Namespace(metadata=ObjectMeta(name="tls-before")))

        leader = await cluster.stream_leader(nc.jetstream(), "KV_steer-namespaces")
        await cluster.kill(leader)
        try:
            # The client's own server may be the one killed: it reconnects over TLS, and the
            # create is sent again while the stream elects a leader.
            await client.create(Namespace(metadata=ObjectMeta(name="tls-after")))
            names = {n.metadata.name for n in await client.list(Namespace, "")}
            assert {"tls-before", "tls-after"} <= names
        finally:
            await cluster.start_again(leader)
    finally:
        await nc.close()


@pytest.mark.parametrize(
    ("what", "problem"),
    [
        ("no client certificate", {"certificate": False}),
        ("no CA", {"ca": False}),
    ],
)
async def test_a_client_without_its_tls_files_is_refused(
    secure: tuple[NatsCluster, SecureFiles], what: str, problem: dict[str, bool]
) -> None:
    cluster, files = secure
    with pytest.raises(SteerError) as refused:
        nc = await connect(cluster.urls, name=what, credentials=files.creds("admin", **problem))
        await nc.close()
    assert "certificate" in str(refused.value).lower() or "tls" in str(refused.value).lower(), refused.value


async def test_a_plain_connection_is_refused(secure: tuple[NatsCluster, SecureFiles]) -> None:
    cluster, files = secure
    plain = Credentials(creds_file=str(files.credentials / f"admin{registry.SUFFIX}"))
    with pytest.raises(SteerError):
        nc = await connect(cluster.urls, name="plain", credentials=plain)
        await nc.close()


async def test_a_certificate_without_a_credential_is_refused(secure: tuple[NatsCluster, SecureFiles]) -> None:
    cluster, files = secure
    pair = files.tls.clients["admin"]
    anonymous = Credentials(tls=TlsOptions(str(files.tls.ca.cert), str(pair.cert), str(pair.key)))
    with pytest.raises(SteerError) as refused:
        nc = await connect(cluster.urls, name="anonymous", credentials=anonymous)
        await nc.close()
    assert "requires credentials" in str(refused.value), refused.value
