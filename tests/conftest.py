"""Shared fixtures: one real nats-server and two API replicas (separate processes) per test session.

Tests isolate themselves by namespace (`ns` fixture), never by sleeping or by resetting the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bus import natsserver
from bus.client import Client
from bus.connection import Credentials, connect, discover
from bus.meta import ObjectMeta
from bus.resources import Namespace
from bus.store import Store

REPO = Path(__file__).resolve().parent.parent
API_REPLICAS = 2


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[natsserver.NatsServer]:
    data = tmp_path_factory.mktemp("nats")
    server = natsserver.start(data, log_file=data / "nats.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: natsserver.NatsServer) -> str:
    return nats_server.url


def start_service(module: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "STEER_LOG_LEVEL": "INFO"}
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def stop_processes(procs: list[subprocess.Popen[bytes]], *, grace: float = 10.0) -> None:
    """SIGTERM to all, then SIGKILL to any still running after `grace` seconds."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def own_cluster(data: Path, *api_args: str, replicas: int = 1) -> Iterator[str]:
    """A nats-server and `replicas` API replicas (started with `api_args`) of their own, under
    `data`; yields the URL."""
    server = natsserver.start(data, log_file=data / "nats.log")
    apis = [
        start_service("services.api", "--nats", server.url, *api_args, log=data / f"api-{i}.log")
        for i in range(replicas)
    ]
    try:
        asyncio.run(wait_for_components(server.url, "steer-api", replicas))
        yield server.url
    finally:
        stop_processes(apis, grace=20)
        server.stop()


async def wait_for_components(
    url: str, name: str, count: int, *, credentials: Credentials | None = None
) -> None:
    nc = await connect(url, name="test-wait", credentials=credentials or Credentials())
    try:
        async with asyncio.timeout(30):
            while len([c for c in await discover(nc, wait=0.3) if c.name == name]) < count:
                pass
    finally:
        await nc.close()


@pytest.fixture(scope="session")
def api_servers(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[subprocess.Popen[bytes]]]:
    logs = tmp_path_factory.mktemp("api")
    procs = [
        start_service("services.api", "--nats", nats_url, log=logs / f"api-{i}.log")
        for i in range(API_REPLICAS)
    ]
    try:
        asyncio.run(wait_for_components(nats_url, "steer-api", API_REPLICAS))
        yield procs
    finally:
        stop_processes(procs)


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[object]:
    conn = await connect(nats_url, name="test")
    yield conn
    await conn.close()


@pytest.fixture
async def client(nc: object, api_servers: object) -> Client:
    return Client(nc)  # type: ignore[arg-type]


@pytest.fixture
async def store(nc: object, api_servers: object) -> Store:
    """Direct store access (the API has created the buckets)."""
    return Store(nc.jetstream())  # type: ignore[attr-defined]


@pytest.fixture
async def ns(client: Client) -> str:
    """A fresh namespace for one test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    await client.create(Namespace(metadata=ObjectMeta(name=name)))
    return name


from tests.agents import start_agent  # noqa: E402  (the fixture, shared by every test package)

__all__ = ["start_agent"]
