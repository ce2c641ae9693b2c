"""A control plane run with credentials: a nats-server that includes a generated authorization
file, and an API that connects with its own credential. Tests connect as whichever identity
they need (`connect_as`) and see what the server lets it do.

Identities: the components (api, scheduler, controllers), admin, nodes node-1 and node-2, and
users alice (edit, confined to namespace `mine`), vera (view, confined to `mine`) and
otto (view, every namespace).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bus import natsserver
from bus.client import Client
from bus.connection import Credentials, connect
from bus.errors import AlreadyExists, SteerError
from bus.meta import ObjectMeta
from bus.resources import Namespace
from bus.store import Store
from cli import registry
from tests.conftest import start_service, stop_processes

NODES = ["node-1", "node-2"]
USERS = {"alice": ("edit", ("mine",)), "vera": ("view", ("mine",)), "otto": ("view", ())}
NAMESPACES = ("mine", "victim")


@dataclass
class SecureCluster:
    server: natsserver.NatsServer
    tmp: Path
    credentials: Path
    services: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def creds(self, identity: str) -> Credentials:
        return Credentials(creds_file=str(self.credentials / f"{identity}{registry.SUFFIX}"))

    def creds_args(self, identity: str) -> list[str]:
        return ["--creds", str(self.credentials / f"{identity}{registry.SUFFIX}")]

    @classmethod
    @contextlib.contextmanager
    def running(cls, tmp: Path) -> Iterator[SecureCluster]:
        credentials = tmp / "credentials"
        reg, _ = registry.ensure_cluster(credentials, NODES)
        for name, (role, namespaces) in USERS.items():
            reg.add(name, role, namespaces)  # type: ignore[arg-type]
        reg.save()
        config = natsserver.config_with(tmp / "nats" / "server.conf", [reg.authorization_file])
        server = natsserver.start(tmp / "nats", config=config, log_file=tmp / "nats.log")
        cluster = cls(server, tmp, credentials)
        try:
            cluster.start_service("services.api", "api")
            asyncio.run(cluster._until_api_serves())
            yield cluster
        finally:
            cluster.stop_services()
            server.stop()

    def start_service(self, module: str, identity: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{module.rsplit('.', 1)[-1]}-{len(self.services)}.log"
        proc = start_service(module, "--nats", self.url, *self.creds_args(identity), *args, log=log)
        self.services.append(proc)
        return proc

    def stop_services(self) -> None:
        stop_processes(self.services, grace=20)
        self.services.clear()

    async def _until_api_serves(self) -> None:
        async with self.connect_as("admin") as (client, _):
            async with asyncio.timeout(60):
                while True:
                    try:
                        await client.get(Namespace, "default", "")
                        break
                    except SteerError:
                        await asyncio.sleep(0.1)  # the API is starting: nothing to wait on but it
            for name in NAMESPACES:
                with contextlib.suppress(AlreadyExists):
                    await client.create(Namespace(metadata=ObjectMeta(name=name)))

    @contextlib.asynccontextmanager
    async def connect_as(self, identity: str, *, node: str = "") -> AsyncIterator[tuple[Client, Store]]:
        nc = await connect(self.url, name=f"test-{identity}", credentials=self.creds(identity))
        try:
            yield Client(nc, timeout=5.0, node=node), Store(nc.jetstream(timeout=5.0))
        finally:
            await nc.close()
