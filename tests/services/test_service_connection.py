"""Every service process against a bus it cannot count on: it waits for a bus that is not there yet,
and it exits non-zero (for its supervisor to restart it) once nats-py has closed its connection for
good, instead of staying alive and deaf."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus import kinds, natsserver
from bus.connection import close, connect
from bus.store import Store
from tests.cluster import ControlPlane
from tests.conftest import start_service, wait_for_components
from tests.faults import ERR_MAX_CONTROL_LINE, Relay, free_port, wait_for_exit, wait_for_line

SERVICES = {
    "steer-api": ("services.api",),
    "steer-scheduler": ("services.scheduler",),
    "steer-controllers": ("services.controllers", "--lease", "4,1"),
    "steer-nodeagent": ("nodeagent", "--runtime", "fake", "--address", "127.0.9.2"),
}


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane.running(tmp_path_factory.mktemp("closed")) as plane:
        yield plane


@pytest.mark.parametrize("component", list(SERVICES))
async def test_a_service_whose_connection_is_closed_for_good_exits_non_zero(
    plane: ControlPlane, tmp_path: Path, component: str
) -> None:
    module, *args = SERVICES[component]
    if module == "nodeagent":
        args += ["--data-dir", str(tmp_path / "nodes"), "--name", f"n{uuid.uuid4().hex[:6]}"]
    log = tmp_path / "service.log"
    async with Relay(plane.url) as relay:
        proc = start_service(module, "--nats", relay.url, *args, log=log)
        try:
            already = 1 if component == "steer-api" else 0  # the plane's own API
            await wait_for_components(plane.url, component, already + 1)
            await relay.send(ERR_MAX_CONTROL_LINE)  # what the server sends before it hangs up
            assert await wait_for_exit(proc) == 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    closed = [line for line in log.read_text().splitlines() if "closed for good" in line]
    assert len(closed) == 1 and "maximum control line exceeded" in closed[0].lower()
    assert "Traceback" not in log.read_text()


async def test_a_service_started_before_its_bus_waits_for_it(tmp_path: Path) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    log = tmp_path / "scheduler.log"
    scheduler = start_service("services.scheduler", "--nats", url, log=log)
    server = api = None
    try:
        await wait_for_line(log, "waiting for it")
        server = await asyncio.to_thread(natsserver.start, tmp_path / "nats", port=port)
        api = start_service("services.api", "--nats", url, log=tmp_path / "api.log")
        await wait_for_components(url, "steer-scheduler", 1)
        assert scheduler.poll() is None
        waiting = [line for line in log.read_text().splitlines() if "cannot connect to NATS" in line]
        assert len(waiting) == 1 and url in waiting[0] and "waiting for it" in waiting[0]
    finally:
        for proc in (scheduler, api):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(20)
        if server is not None:
            server.stop()


async def test_services_started_before_the_api_wait_for_its_buckets(tmp_path: Path) -> None:
    server = await asyncio.to_thread(natsserver.start, tmp_path / "nats")
    logs = {name: tmp_path / f"{name}.log" for name in ("scheduler", "controllers", "api")}
    procs = []
    try:
        procs.append(start_service("services.scheduler", "--nats", server.url, log=logs["scheduler"]))
        procs.append(start_service("services.controllers", "--nats", server.url, log=logs["controllers"]))
        for name in ("scheduler", "controllers"):
            await wait_for_line(logs[name], "the API creates it when it starts; waiting for it")
        # Whoever starts first, the buckets get the API's settings (not one replica, history 1).
        procs.append(start_service("services.api", "--nats", server.url, "--history", "3", log=logs["api"]))
        await wait_for_components(server.url, "steer-scheduler", 1)
        await wait_for_components(server.url, "steer-controllers", 1)
        nc = await connect(server.url, name="test-buckets")
        try:
            for info in kinds.KINDS:
                assert (await (await Store(nc.jetstream()).bucket(info)).status()).history == 3
        finally:
            await close(nc)
        for name in ("scheduler", "controllers"):
            waiting = [line for line in logs[name].read_text().splitlines() if "waiting for it" in line]
            assert len(waiting) == 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(20)
        server.stop()
