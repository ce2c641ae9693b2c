"""A NATS cluster of three real nats-servers on random loopback ports, for one test module.

    @pytest.fixture(scope="module")
    def cluster(tmp_path_factory):
        with NatsCluster.running(tmp_path_factory.mktemp("cluster")) as cluster:
            yield cluster

    async def test_x(cluster):
        leader = await cluster.stream_leader(js, "KV_steer-pods")
        await cluster.kill(leader)             # SIGKILL, as a crash
        ...
        await cluster.start_again(leader)      # same ports, same store

Servers are named `steer-1`... as in their configuration (`bus/natscluster.py`); each has a
monitoring port, from which the JetStream meta leader and each server's own view of a stream are
read (`/jsz`): that works without a system account.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from bus import natscluster, natsserver
from bus.client import Client
from bus.connection import connect
from bus.errors import SteerError
from bus.meta import ObjectMeta
from bus.resources import Namespace
from tests.conftest import start_service, stop_processes, wait_for_components


def free_ports(count: int) -> list[int]:
    """`count` different ports nobody listens on now (all held open together while chosen, so
    that the kernel cannot hand out one of them twice)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


@dataclass
class NatsCluster:
    specs: list[natscluster.ServerSpec]
    servers: dict[str, natsserver.NatsServer]
    root: Path

    @property
    def urls(self) -> str:
        """Every server's URL, comma-separated (a component's `--nats`)."""
        return natscluster.urls(self.specs)

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def url(self, name: str) -> str:
        return self.spec(name).url

    def spec(self, name: str) -> natscluster.ServerSpec:
        return next(spec for spec in self.specs if spec.name == name)

    def running_names(self) -> list[str]:
        return [name for name, server in self.servers.items() if server.process.poll() is None]

    @classmethod
    @contextlib.contextmanager
    def running(
        cls, root: Path, *, size: int = 3, includes: Sequence[Path] = (), route_includes: Sequence[Path] = ()
    ) -> Iterator[NatsCluster]:
        """The cluster; `includes` and `route_includes` as `bus.natscluster.write_configs` takes
        them (an authorization file, TLS blocks)."""
        ports = free_ports(3 * size)
        specs = [
            natscluster.ServerSpec(
                name=f"steer-{i + 1}",
                host="127.0.0.1",
                port=ports[3 * i],
                cluster_port=ports[3 * i + 1],
                monitor_port=ports[3 * i + 2],
            )
            for i in range(size)
        ]
        paths = natscluster.write_configs(root, specs, includes=includes, route_includes=route_includes)
        servers: dict[str, natsserver.NatsServer] = {}
        try:
            for spec, path in zip(specs, paths, strict=True):
                servers[spec.name] = natsserver.start(
                    natscluster.server_dir(root.resolve(), spec),
                    port=spec.port,
                    config=path,
                    complete=True,
                    log_file=root / f"{spec.name}.log",
                )
            cluster = cls(specs, servers, root)
            asyncio.run(cluster.wait_for_meta_leader())
            yield cluster
        finally:
            for server in servers.values():
                server.stop()

    # -- faults

    async def kill(self, name: str) -> None:
        """SIGKILL one server: it dies at once, as in a crash."""
        await asyncio.to_thread(self.servers[name].kill)

    @contextlib.contextmanager
    def paused(self, *names: str) -> Iterator[None]:
        """SIGSTOP servers for a while (they hold their connections and answer nothing), then
        SIGCONT: a stream whose followers are paused cannot commit, so a write stays in flight."""
        for name in names:
            self.servers[name].process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            for name in names:
                self.servers[name].process.send_signal(signal.SIGCONT)

    async def start_again(self, name: str) -> None:
        """Start a killed server again, on the same ports and store."""
        await asyncio.to_thread(self.servers[name].start_again)

    # -- who leads

    async def jsz(self, name: str, query: str = "") -> dict[str, Any]:
        """A server's JetStream report from its monitoring port (`/jsz?<query>`)."""
        port = self.spec(name).monitor_port
        url = f"http://127.0.0.1:{port}/jsz{'?' + query if query else ''}"

        def read() -> dict[str, Any]:
            with urllib.request.urlopen(url, timeout=5) as response:
                return dict(json.loads(response.read()))

        return await asyncio.to_thread(read)

    async def meta_leader(self) -> str:
        """The JetStream meta leader, as a running server sees it ("" if none now)."""
        for name in self.running_names():
            with contextlib.suppress(OSError, ValueError):
                leader = (await self.jsz(name)).get("meta_cluster", {}).get("leader", "")
                if leader:
                    return str(leader)
        return ""

    async def wait_for_meta_leader(self, *, within: float = 30.0) -> str:
        async with asyncio.timeout(within):
            while True:
                if leader := await self.meta_leader():
                    return leader
                await asyncio.sleep(0.1)  # no watch on the monitoring port: its state is the condition

    async def stream_leader(self, js: JetStreamContext, stream: str, *, within: float = 30.0) -> str:
        """The server that leads `stream` (`$JS.API.STREAM.INFO`), once it has one."""
        async with asyncio.timeout(within):
            while True:
                with contextlib.suppress(nats.errors.Error, TimeoutError, SteerError):
                    info = await js.stream_info(stream)
                    if info.cluster is not None and info.cluster.leader:
                        return info.cluster.leader
                await asyncio.sleep(0.1)

    async def stream_state(self, name: str, stream: str) -> dict[str, Any]:
        """Server `name`'s own copy of a stream: messages, bytes, first and last sequence."""
        report = await self.jsz(name, "accounts=true&streams=true")
        for account in report.get("account_details", []):
            for detail in account.get("stream_detail", []):
                if detail.get("name") == stream:
                    return dict(detail["state"])
        return {}

    async def wait_caught_up(self, name: str, stream: str, *, within: float = 30.0) -> dict[str, Any]:
        """Until server `name` holds the same messages of `stream` as the others; its state."""
        wanted: dict[str, Any] = {}
        async with asyncio.timeout(within):
            while True:
                try:
                    states = {n: await self.stream_state(n, stream) for n in self.running_names()}
                except OSError:
                    await asyncio.sleep(0.1)  # a server starting: its monitoring port not yet open
                    continue
                wanted = {k: states[name].get(k) for k in ("messages", "first_seq", "last_seq")}
                same = all({k: s.get(k) for k in wanted} == wanted for s in states.values())
                if same and wanted["last_seq"]:
                    return states[name]
                await asyncio.sleep(0.1)  # see wait_for_meta_leader


@contextlib.contextmanager
def api_replicas(
    cluster: NatsCluster, *, count: int = 2, replicas: int = 3
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` API replicas connected to every server, keeping the store at `replicas`."""
    args = ["--nats", cluster.urls, "--replicas", str(replicas)]
    procs = [start_service("services.api", *args, log=cluster.root / f"api-{i}.log") for i in range(count)]
    try:
        asyncio.run(wait_for_components(cluster.urls, "steer-api", count))
        yield procs
    finally:
        stop_processes(procs)


@contextlib.asynccontextmanager
async def connected(urls: str, name: str) -> AsyncIterator[NATS]:
    """A connection to the servers of `urls` (it learns of the others from them, too)."""
    nc = await connect(urls, name=name)
    try:
        yield nc
    finally:
        await nc.close()


async def namespace(client: Client) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    await client.create(Namespace(metadata=ObjectMeta(name=name)))
    return name
