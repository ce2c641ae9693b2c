"""`steer up` (a whole local cluster), `steer status`, and the commands that start one service.

`steer up` supervises separate processes: the embedded nats-server first, then each service.
They run in their own sessions, so Ctrl-C reaches only `steer up`, which stops the services
first and the bus last. A service that dies is restarted, with a growing delay.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from bus import natsserver
from bus.connection import ComponentInfo, connect, discover
from bus.errors import SteerError, Unavailable
from bus.meta import is_true
from bus.resources import Namespace, Node
from cli import manifests
from cli.apply import apply_manifest
from cli.columns import age
from cli.errors import report, run_async
from cli.output import stdout
from cli.session import Session, session, settings

RESTART_LIMIT = 5
API_START_TIMEOUT = 60.0


@dataclass
class Child:
    """One supervised service process."""

    name: str
    args: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    restart_at: float = 0.0
    history: list[int] = field(default_factory=list)

    def start(self) -> None:
        with open(self.log, "ab") as out:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def state(self) -> str:
        if self.process is None:
            return "starting"
        code = self.process.poll()
        return "running" if code is None else f"exited ({code})"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@run_async
async def up(
    data_dir: Annotated[Path, typer.Option(help="Where the cluster keeps its state and logs.")] = Path(
        ".steer"
    ),
    port: Annotated[int, typer.Option(help="Port of the embedded NATS server.")] = 4222,
    api_replicas: Annotated[int, typer.Option(help="API server replicas.")] = 1,
    nodes: Annotated[int, typer.Option(help="Node agents, each on its own loopback address.")] = 3,
    runtime: Annotated[
        str, typer.Option(help="auto (docker if an engine answers, else process), docker, process or fake.")
    ] = "auto",
    apply: Annotated[
        list[str] | None, typer.Option("--apply", "-f", help="Manifests to apply once the API is up.")
    ] = None,
) -> int:
    """Run a local cluster: embedded NATS, then every service, until Ctrl-C."""
    if not 1 <= api_replicas <= 8:
        raise SteerError("--api-replicas must be between 1 and 8")
    if not 0 <= nodes <= 50:
        raise SteerError("--nodes must be between 0 and 50")
    if runtime not in ("auto", "docker", "process", "fake"):
        raise SteerError(f'unknown --runtime "{runtime}": use auto, docker, process or fake')
    data_dir = data_dir.resolve()
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    server = await asyncio.to_thread(
        natsserver.start, data_dir / "nats", port=port, log_file=logs / "nats.log"
    )
    settings.servers = server.url
    services = [
        Child(f"api-{i + 1}", ["services.api", "--nats", server.url], logs / f"api-{i + 1}.log")
        for i in range(api_replicas)
    ]
    services.append(Child("scheduler", ["services.scheduler", "--nats", server.url], logs / "scheduler.log"))
    services.append(
        Child("controllers", ["services.controllers", "--nats", server.url], logs / "controllers.log")
    )
    agents = []
    for i in range(nodes):
        name = f"node-{i + 1}"
        args = ["nodeagent", "--name", name, "--address", f"127.0.0.{11 + i}", "--runtime", runtime]
        # Separate port ranges: a container that binds 0.0.0.0 cannot collide with another node's.
        ports = f"{20000 + 500 * i}-{20000 + 500 * i + 499}"
        args += ["--nats", server.url, "--data-dir", str(data_dir / "nodes"), "--ports", ports]
        agents.append(Child(name, args, logs / f"{name}.log"))
    children = services + agents
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        _say(f"nats: listening on {server.url} (data in {data_dir})")
        for child in services:
            _launch(child)
        async with session() as s:
            await _wait_for_api(s, stop)
            for child in agents:  # after the API, so that they register at once
                _launch(child)
            await _wait_for_nodes(s, [child.name for child in agents], stop)
            for manifest in apply or []:
                await _apply(s, manifest)
            _say(
                f"ready: export STEER_NATS={server.url}; try `steer get namespaces`; Ctrl-C stops the cluster"
            )
            await _supervise(s, children, stop)
    finally:
        for group in (agents, services):  # node agents first, then the API, the bus last
            for child in group:
                child.stop()
            for child in group:
                child.wait(40)
        server.stop()
        _say("stopped")
    return 0


def _launch(child: Child) -> None:
    child.start()
    _say(f"{child.name}: started (pid {child.process.pid if child.process else '?'}), log {child.log}")


async def _wait_for_nodes(s: Session, names: list[str], stop: asyncio.Event) -> None:
    """Until every node agent has registered a Ready Node (or a minute has passed)."""
    waiting = set(names)
    if not waiting:
        return
    try:
        async with asyncio.timeout(API_START_TIMEOUT):
            async for event in s.store.watch(Node):
                node = event.object
                if node is not None and is_true(node.status.conditions):
                    waiting.discard(node.metadata.name)
                if not waiting or stop.is_set():
                    return
    except TimeoutError:
        _say(f"warning: nodes not ready yet: {', '.join(sorted(waiting))} (see their logs)")


def _say(line: str) -> None:
    stdout.print(line, markup=False, highlight=False)


async def _wait_for_api(s: Session, stop: asyncio.Event) -> None:
    async with asyncio.timeout(API_START_TIMEOUT):
        while not stop.is_set():
            try:
                await s.client.get(Namespace, "default", "")
                return
            except Unavailable:
                await asyncio.wait([asyncio.ensure_future(stop.wait())], timeout=0.2)


async def _apply(s: Session, path: str) -> None:
    for manifest in manifests.read([path]):
        try:
            _say(await apply_manifest(s, manifest, None))
        except SteerError as err:
            report(err, subject=manifest.source)


async def _supervise(s: Session, children: list[Child], stop: asyncio.Event) -> None:
    """Restart children that die; show a live status table when attached to a terminal."""
    live = Live(auto_refresh=False, console=stdout) if stdout.is_terminal else None
    if live:
        live.start()
    try:
        while not stop.is_set():
            now = asyncio.get_running_loop().time()
            for child in children:
                _revive(child, now)
            if live:
                components = await discover(s.nc, wait=0.3)
                live.update(_status_table(children, components), refresh=True)
            await asyncio.wait([asyncio.ensure_future(stop.wait())], timeout=1.0)
    finally:
        if live:
            live.stop()


def _revive(child: Child, now: float) -> None:
    if child.process is None or child.process.poll() is None:
        return
    if child.restarts >= RESTART_LIMIT:
        return
    if not child.restart_at:
        child.restart_at = now + min(2**child.restarts, 30)
        _say(f"{child.name}: {child.state}; restarting (see {child.log})")
    elif now >= child.restart_at:
        child.restarts += 1
        child.restart_at = 0.0
        child.start()


def _status_table(children: list[Child], components: list[ComponentInfo]) -> Table:
    table = Table(title="steersman", title_justify="left", show_edge=False)
    for column in ("PROCESS", "PID", "STATE", "RESTARTS"):
        table.add_column(column)
    for child in children:
        pid = str(child.process.pid) if child.process else "-"
        table.add_row(child.name, pid, child.state, str(child.restarts))
    table.add_section()
    for component in components:
        table.add_row(component.name, component.metadata.get("instance", component.id), "announced", "")
    return table


@run_async
async def status() -> int:
    """List the live components (NATS micro services) of the cluster."""
    nc = await connect(settings.servers, name="steer-cli", credentials=settings.credentials)
    try:
        components = await discover(nc)
        version = nc.connected_server_version
        stdout.print(
            f"nats: {nc.connected_url.netloc if nc.connected_url else settings.servers} (server {version})"
        )
    finally:
        await nc.close()
    if not components:
        print("no steersman components are running", file=sys.stderr)
        return 1
    table = Table(show_edge=False, box=None, header_style="bold", pad_edge=False)
    for column in ("COMPONENT", "INSTANCE", "VERSION", "REQUESTS", "ERRORS", "UP"):
        table.add_column(column)
    for c in components:
        started = _parse_time(c.started)
        table.add_row(
            c.name, c.metadata.get("instance", c.id), c.version, str(c.requests), str(c.errors), age(started)
        )
    stdout.print(table)
    return 0


def _parse_time(text: str) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def exec_service(module: str, args: list[str]) -> None:
    """Hand the process over to a service's own entry point (cli never imports services)."""
    os.execv(sys.executable, [sys.executable, "-m", module, *args])
