"""A whole control plane of its own for one test module: nats-server, API, scheduler, controllers
and node agents as real processes, so that nodes and pods of other tests never count.

    @pytest.fixture(scope="module")
    def plane(tmp_path_factory):
        with ControlPlane.running(tmp_path_factory.mktemp("x")) as plane:
            yield plane

    async def test_x(plane):
        plane.start_scheduler()
        plane.start_controllers("--node-grace", "5")
        agent = plane.start_agent("docker")
        async with plane.connect() as (client, store):
            await wait_for(store, Node, "", agent.name, node_ready)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bus import natsserver
from bus.client import Client
from bus.connection import connect
from bus.meta import ObjectMeta
from bus.resources import Namespace
from bus.store import Store
from tests.agents import AgentProcess, clean_up
from tests.conftest import start_service, stop_processes, wait_for_components

_subnets = itertools.count(100 + os.getpid() % 100)


@dataclass
class ControlPlane:
    server: natsserver.NatsServer
    tmp: Path
    services: list[subprocess.Popen[bytes]] = field(default_factory=list)
    agents: list[AgentProcess] = field(default_factory=list)
    subnet: int = field(default_factory=lambda: next(_subnets))

    @property
    def url(self) -> str:
        return self.server.url

    @classmethod
    @contextlib.contextmanager
    def running(cls, tmp: Path) -> Iterator[ControlPlane]:
        server = natsserver.start(tmp / "nats", log_file=tmp / "nats.log")
        plane = cls(server, tmp)
        try:
            plane.start_service("services.api")
            asyncio.run(wait_for_components(server.url, "steer-api", 1))
            yield plane
        finally:
            plane.stop_all()
            server.stop()

    def start_service(self, module: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{module.rsplit('.', 1)[-1]}-{len(self.services)}.log"
        proc = start_service(module, "--nats", self.url, *args, log=log)
        self.services.append(proc)
        return proc

    def start_scheduler(self, *args: str) -> subprocess.Popen[bytes]:
        return self.start_service("services.scheduler", *args)

    def start_controllers(self, *args: str) -> subprocess.Popen[bytes]:
        return self.start_service("services.controllers", "--lease", "4,1", *args)

    def start_agent(self, runtime: str = "docker", *extra: str, name: str = "") -> AgentProcess:
        name = name or f"n{uuid.uuid4().hex[:6]}"
        address = f"127.0.{self.subnet}.{len(self.agents) + 2}"
        args = ["--name", name, "--address", address, "--runtime", runtime, "--nats", self.url]
        args += ["--backoff", "0.5,4,60", "--resync", "5", "--data-dir", str(self.tmp / "nodes")]
        args += ["--network", "host", *extra]  # the pod network's tests ask for it in `extra`
        agent = AgentProcess(name, address, args, self.tmp / f"agent-{name}.log")
        agent.start()
        self.agents.append(agent)
        return agent

    def stop_services(self) -> None:
        stop_processes(self.services, grace=20)
        self.services.clear()

    def stop_agents(self) -> None:
        for agent in self.agents:
            agent.stop()
        for agent in self.agents:
            clean_up(agent)
        self.agents.clear()

    def stop_all(self) -> None:
        self.stop_agents()
        self.stop_services()

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[tuple[Client, Store]]:
        nc = await connect(self.url, name="test")
        try:
            yield Client(nc), Store(nc.jetstream())
        finally:
            await nc.close()

    @staticmethod
    async def namespace(client: Client) -> str:
        name = f"t-{uuid.uuid4().hex[:8]}"
        await client.create(Namespace(metadata=ObjectMeta(name=name)))
        return name
