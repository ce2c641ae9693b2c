"""`steer up`: a whole local cluster from one command, supervised until it is stopped.

In order: claim the data dir (datadir.py), check the bus ports (portowner.py), make the cluster's
credentials (`<data-dir>/credentials`, cli/registry.py) unless `--insecure`, start nats-server
with their authorization file (or, with `--servers 3`, a cluster of three on loopback, whose
configuration files bus/natscluster.py writes, every bucket then at three replicas) and wait
until it listens, then the API replicas, the scheduler and the controllers; once the API answers,
the node agents (so that they register at once); once their Nodes are Ready, the manifests of
`--apply`; then "ready". Every process is supervised (supervisor.py): restarted whenever it
exits, and killed by the kernel if `steer up` dies. Each runs with its own credential; the CLI
finds the admin's by itself (cli/session.py). When the authorization file changes (`steer
credentials add-user`...), the servers are told to reload it.

SIGINT, SIGTERM and SIGHUP (the terminal closed) stop the cluster: node agents first, then the
other services, the bus last; a second signal kills them at once. The pods' containers are left
running on purpose: the next `steer up` adopts them, as a restarted kubelet does. `steer down`
removes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import nats.errors
import typer
from rich.live import Live
from rich.table import Table

from bus import natscluster, natsserver
from bus.connection import ComponentInfo, discover
from bus.errors import SteerError, Timeout, Unavailable
from bus.meta import is_true
from bus.resources import Namespace, Node
from bus.validation.networking import DEFAULT_NODE_PORT_RANGE, node_port_range
from bus.validation.rules import dns1123_label
from cli import datadir, manifests, portowner, registry
from cli.apply import apply_manifest
from cli.datadir import UpRecord
from cli.errors import report, run_async
from cli.output import stdout
from cli.session import Session, session, settings
from cli.supervisor import BackoffPolicy, Child, Supervisor

HOST = "127.0.0.1"  # nats.conf listens on loopback only
API_START_TIMEOUT = 60.0
BUS_START_TIMEOUT = 30.0
STOP_GRACE = 30.0  # seconds each group of processes has to stop before SIGKILL
STATUS_REFRESH = 1.0
AUTHORIZATION_CHECK = 1.0  # seconds between looks at the authorization file
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class LocalCluster:
    """The processes of one `steer up`, in the groups they are stopped in (agents first)."""

    data_dir: Path
    url: str  # every server's URL, comma-separated
    buses: list[Child]  # nats-server, or each server of the cluster
    services: list[Child]
    agents: list[Child]
    credentials: registry.Registry | None = None  # None: --insecure

    @property
    def children(self) -> list[Child]:
        return [*self.buses, *self.services, *self.agents]

    @property
    def stop_order(self) -> list[list[Child]]:
        """Node agents, then the API's clients (they give up their leases through it), then the
        API, the bus last."""
        api = [child for child in self.services if child.name.startswith("api")]
        clients = [child for child in self.services if child not in api]
        return [self.agents, clients, api, self.buses]


@run_async
async def up(
    data_dir: Annotated[Path, typer.Option(help="Where the cluster keeps its state and logs.")] = Path(
        ".steer"
    ),
    port: Annotated[
        int, typer.Option(help="Port of the embedded NATS server (the first of them, with --servers).")
    ] = 4222,
    servers: Annotated[
        int,
        typer.Option(
            help="NATS servers: 1, or a cluster of 3 or 5 on loopback (JetStream at 3 replicas); "
            "client ports from --port, route ports from --cluster-port."
        ),
    ] = 1,
    cluster_port: Annotated[int, typer.Option(help="First route port of a --servers cluster.")] = 6222,
    nats_include: Annotated[
        list[Path] | None,
        typer.Option(
            "--nats-include",
            help="A file each cluster server's configuration includes (an authorization or tls block).",
        ),
    ] = None,
    api_replicas: Annotated[int, typer.Option(help="API server replicas.")] = 1,
    scheduler_replicas: Annotated[
        int, typer.Option(help="Scheduler replicas (one leads, the others stand by).")
    ] = 1,
    controllers_replicas: Annotated[
        int, typer.Option(help="Controllers replicas (one leads, the others stand by).")
    ] = 1,
    nodes: Annotated[int, typer.Option(help="Node agents, each on its own loopback address.")] = 3,
    runtime: Annotated[
        str, typer.Option(help="auto (docker if an engine answers, else process), docker, process or fake.")
    ] = "auto",
    node_prefix: Annotated[
        str,
        typer.Option(
            help="Nodes are PREFIX-1, PREFIX-2...; clusters sharing a Docker engine need different ones."
        ),
    ] = "node",
    network: Annotated[
        str,
        typer.Option(
            help="pod (a namespace and address per pod), host (the host's network), or auto: pod "
            "where the node agents may make namespaces (as root), else host."
        ),
    ] = "auto",
    cluster_cidr: Annotated[
        str, typer.Option(help="Pod addresses: each node gets a /24 of it (on the pod network).")
    ] = "10.244.0.0/16",
    service_cidr: Annotated[str, typer.Option(help="ClusterIPs: one per Service.")] = "10.96.0.0/16",
    service_node_port_range: Annotated[
        str,
        typer.Option(
            metavar="LOW-HIGH", help="nodePorts of NodePort and LoadBalancer Services: one per port."
        ),
    ] = DEFAULT_NODE_PORT_RANGE,
    restart_backoff: Annotated[
        str,
        typer.Option(
            help="Restart delays in seconds, INITIAL,CAP,RESET: the first restart is at once, the next "
            "wait INITIAL doubling to CAP; a process that ran RESET seconds starts over."
        ),
    ] = "1,300,60",
    apply: Annotated[
        list[str] | None, typer.Option("--apply", "-f", help="Manifests to apply once the API is up.")
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure", help="No credentials: any local connection may do anything (the bus is unguarded)."
        ),
    ] = False,
) -> int:
    """Run a local cluster: embedded NATS, then every service, supervised until Ctrl-C."""
    for option, replicas in (
        ("--api-replicas", api_replicas),
        ("--scheduler-replicas", scheduler_replicas),
        ("--controllers-replicas", controllers_replicas),
    ):
        if not 1 <= replicas <= 8:
            raise SteerError(f"{option} must be between 1 and 8")
    if not 0 <= nodes <= 50:
        raise SteerError("--nodes must be between 0 and 50")
    if servers not in (1, 3, 5):
        raise SteerError("--servers must be 1, 3 or 5 (a cluster needs an odd number for its quorum)")
    for option, first in (("--port", port), ("--cluster-port", cluster_port)):
        if not 1 <= first <= 65536 - servers:
            raise SteerError(f"{option} must be between 1 and {65536 - servers}")
    if nats_include and servers == 1:
        raise SteerError("--nats-include is for a --servers cluster (the single server uses nats.conf)")
    for include in nats_include or []:
        if not include.is_file():
            raise SteerError(f"--nats-include {include}: no such file")
    if runtime not in ("auto", "docker", "process", "fake"):
        raise SteerError(f'unknown --runtime "{runtime}": use auto, docker, process or fake')
    if network not in ("auto", "pod", "host"):
        raise SteerError(f'unknown --network "{network}": use auto, pod or host')
    try:
        cluster_cidr = str(ipaddress.IPv4Network(cluster_cidr))
    except ValueError as err:
        raise SteerError(f"--cluster-cidr: {err}") from None
    try:
        service_cidr = str(ipaddress.IPv4Network(service_cidr))
    except ValueError as err:
        raise SteerError(f"--service-cidr: {err}") from None
    try:
        node_port_range(service_node_port_range)
    except ValueError as err:
        raise SteerError(f"--service-node-port-range: {err}") from None
    if problems := dns1123_label(f"{node_prefix}-{max(nodes, 1)}"):
        raise SteerError(f'--node-prefix "{node_prefix}" makes invalid node names: {"; ".join(problems)}')
    try:
        backoff = BackoffPolicy.parse(restart_backoff)
    except ValueError as err:
        raise SteerError(f"--restart-backoff: {err}") from None
    data_dir = data_dir.resolve()
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    specs = natscluster.loopback_specs(servers, port=port, cluster_port=cluster_port, host=HOST)
    url = natscluster.urls(specs)
    record = UpRecord(pid=os.getpid(), url=url, node_prefix=node_prefix, runtime=runtime)
    with datadir.claim(data_dir, record):
        for spec in specs:
            portowner.ensure_free(HOST, spec.port)
            if servers > 1:
                portowner.ensure_free(HOST, spec.cluster_port)
        names = [f"{node_prefix}-{i + 1}" for i in range(nodes)]
        counts = {"api": api_replicas, "scheduler": scheduler_replicas, "controllers": controllers_replicas}
        creds = None if insecure else registry.ensure_cluster(data_dir / "credentials", names)[0]
        buses = _buses(data_dir, specs, includes=nats_include or [], credentials=creds)
        cluster = _cluster(
            data_dir,
            buses,
            url=url,
            replicas=counts,
            node_names=names,
            runtime=runtime,
            network=network,
            cluster_cidr=cluster_cidr,
            service_cidr=service_cidr,
            node_port_range=service_node_port_range,
            credentials=creds,
        )
        return await _Up(cluster, backoff).run(apply or [])


def _buses(
    data_dir: Path,
    specs: list[natscluster.ServerSpec],
    *,
    includes: list[Path],
    credentials: registry.Registry | None,
) -> list[Child]:
    """The nats-server processes: the embedded one with nats.conf, or each server of a cluster
    with the configuration file written for it under `<data-dir>/nats/<server>/`; each includes
    the cluster's authorization file unless `--insecure`."""
    logs = data_dir / "logs"
    authorization = [credentials.authorization_file] if credentials is not None else []
    if len(specs) == 1:
        port = specs[0].port
        config = natsserver.REPO_CONF
        if authorization:
            config = natsserver.config_with(data_dir / "nats" / "server.conf", authorization)
        command = natsserver.command(bus_dir(data_dir, specs, 0), port=port, host=HOST, config=config)
        return [Child("nats", command, logs / "nats.log", explain=lambda: portowner.why_busy(HOST, port))]
    paths = natscluster.write_configs(data_dir / "nats", specs, includes=[*includes, *authorization])
    buses = []
    for i, (spec, path) in enumerate(zip(specs, paths, strict=True)):
        command = natsserver.command(bus_dir(data_dir, specs, i), port=spec.port, config=path, complete=True)
        buses.append(Child(spec.name, command, logs / f"{spec.name}.log", explain=_why_busy(spec)))
    return buses


def _why_busy(spec: natscluster.ServerSpec) -> Callable[[], str]:
    return lambda: portowner.why_busy(HOST, spec.port) or portowner.why_busy(HOST, spec.cluster_port)


def bus_dir(data_dir: Path, specs: list[natscluster.ServerSpec], index: int) -> Path:
    """Where server `index` keeps its store and ports file (`nats/`, or `nats/<server>/`)."""
    if len(specs) == 1:
        return data_dir / "nats"
    return natscluster.server_dir(data_dir / "nats", specs[index])


def _cluster(
    data_dir: Path,
    buses: list[Child],
    *,
    url: str,
    replicas: dict[str, int],
    node_names: list[str],
    runtime: str,
    network: str = "auto",
    cluster_cidr: str = "10.244.0.0/16",
    service_cidr: str = "10.96.0.0/16",
    node_port_range: str = DEFAULT_NODE_PORT_RANGE,
    credentials: registry.Registry | None = None,
) -> LocalCluster:
    logs = data_dir / "logs"

    def creds(identity: str) -> list[str]:
        return ["--creds", str(credentials.credential_file(identity))] if credentials is not None else []

    python = [sys.executable, "-m"]
    # Buckets and the events stream at three replicas on a cluster: a server may die.
    store = ["--replicas", str(natscluster.REPLICAS)] if len(buses) > 1 else []
    ranges = ["--service-cidr", service_cidr, "--service-node-port-range", node_port_range]
    services = [
        Child(
            f"api-{i + 1}",
            [*python, "services.api", "--nats", url, *store, *ranges, *creds("api")],
            logs / f"api-{i + 1}.log",
        )
        for i in range(replicas["api"])
    ]
    for service in ("scheduler", "controllers"):
        count = replicas[service]
        for i in range(count):
            name = service if count == 1 else f"{service}-{i + 1}"
            # A replica restarted under the same identity takes its leader lease back at once,
            # instead of waiting out the lease its killed predecessor held.
            args = [*python, f"services.{service}", "--nats", url, "--instance", name, *creds(service)]
            if service == "controllers":
                args += ["--cluster-cidr", cluster_cidr]
            services.append(Child(name, args, logs / f"{name}.log"))
    agents = []
    for i, name in enumerate(node_names):
        # Separate port ranges: a container that binds 0.0.0.0 cannot collide with another node's.
        ports = f"{20000 + 500 * i}-{20000 + 500 * i + 499}"
        args = ["nodeagent", "--name", name, "--address", f"127.0.0.{11 + i}", "--runtime", runtime]
        args += ["--nats", url, "--data-dir", str(data_dir / "nodes"), "--ports", ports, *creds(name)]
        args += ["--network", network, "--cluster-cidr", cluster_cidr, "--service-cidr", service_cidr]
        agents.append(Child(name, [*python, *args], logs / f"{name}.log"))
    return LocalCluster(data_dir, url, buses, services, agents, credentials)


class _Up:
    """One run of `steer up`: bring the cluster up, supervise it, stop it on a signal."""

    def __init__(self, cluster: LocalCluster, backoff: BackoffPolicy) -> None:
        self.cluster = cluster
        self.supervisor = Supervisor(backoff=backoff, say=_say)
        self.stopping = asyncio.Event()
        self.failure: SteerError | None = None

    async def run(self, manifest_paths: list[str]) -> int:
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            async with asyncio.TaskGroup() as tasks:
                bring_up = tasks.create_task(self._bring_up(tasks, manifest_paths))
                await self.stopping.wait()
                bring_up.cancel()
                await self.supervisor.stop(self.cluster.stop_order, grace=STOP_GRACE)
        finally:
            await self.supervisor.stop(self.cluster.stop_order, grace=STOP_GRACE)  # after a bug, too
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)
        _say("stopped")
        if self.failure is not None:
            raise self.failure
        return 0

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stopping.is_set():
            _say(f"{sig.name} again: killing every process now")
            self.supervisor.kill(self.cluster.children)
            return
        _say(f"{sig.name}: stopping node agents, then services, then the bus ({sig.name} again: kill now)")
        self.stopping.set()

    async def _bring_up(self, tasks: asyncio.TaskGroup, manifest_paths: list[str]) -> None:
        cluster = self.cluster
        try:
            for bus in cluster.buses:
                natsserver.prepare(_store_dir(bus))
                self.supervisor.start(bus)
            for bus in cluster.buses:
                await _until_listening(bus, _store_dir(bus))
                tasks.create_task(self.supervisor.keep_running(bus))
                _say(f"{bus.name}: listening (pid {bus.pid}, log {bus.log})")
            _say(f"nats: {cluster.url} (data in {cluster.data_dir})")
            for child in cluster.services:
                self._launch(tasks, child)
            settings.servers = cluster.url
            if cluster.credentials is not None:
                admin = cluster.credentials.credential_file(registry.ADMIN)
                settings.credentials = dataclasses.replace(settings.credentials, creds_file=str(admin))
                tasks.create_task(self._reload_on_change(cluster.credentials.authorization_file))
            async with session() as s:
                await _wait_for_api(s, cluster.services[0])
                for child in cluster.agents:  # after the API, so that they register at once
                    self._launch(tasks, child)
                await _wait_for_nodes(s, [child.name for child in cluster.agents])
                for path in manifest_paths:
                    await _apply(s, path)
                creds = settings.credentials.creds_file
                _say(
                    f"ready: export STEER_NATS={cluster.url}"
                    + (f" STEER_CREDS={creds}" if creds else "")
                    + "; try `steer get namespaces`; "
                    "Ctrl-C stops the cluster (its pods keep running; `steer down` removes them)"
                )
                if stdout.is_terminal:
                    await _show_status(s, cluster)
        except SteerError as err:
            self.failure = err
            self.stopping.set()

    async def _reload_on_change(self, authorization: Path) -> None:
        """Tell nats-server to reload when the authorization file changes (`steer credentials
        add-user`, `revoke`...). Looked at every second: the file is small, and the standard
        library has no portable file watch."""
        last = _read(authorization)
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), AUTHORIZATION_CHECK)
            current = _read(authorization)
            if current != last:
                last = current
                for bus in self.cluster.buses:
                    if bus.process is not None:
                        natsserver.reload(bus.process)
                _say(f"nats: {authorization} changed; reloaded")

    def _launch(self, tasks: asyncio.TaskGroup, child: Child) -> None:
        self.supervisor.start(child)
        _say(f"{child.name}: started (pid {child.pid}), log {child.log}")
        tasks.create_task(self.supervisor.keep_running(child))


def _store_dir(bus: Child) -> Path:
    """The data dir of a nats-server child (`bus_dir`), from its command line (`natsserver.command`
    puts the ports file there): the one place that says where the child keeps its files."""
    return Path(bus.argv[bus.argv.index("--ports_file_dir") + 1]).parent


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


async def _until_listening(bus: Child, nats_dir: Path) -> None:
    """Until the first nats-server listens; Unavailable (with its last log line) if it exits first."""
    assert bus.process is not None
    async with asyncio.timeout(BUS_START_TIMEOUT):
        while natsserver.listening_url(bus.process, nats_dir) is None:
            if bus.process.poll() is not None:
                raise natsserver.exited_at_start(bus.process, bus.log)
            await asyncio.sleep(0.02)  # the server writes its ports file within milliseconds


async def _wait_for_api(s: Session, api: Child) -> None:
    """Until an API replica answers; said once if that takes long (it is restarted meanwhile)."""
    loop = asyncio.get_running_loop()
    warn_at = loop.time() + API_START_TIMEOUT
    while True:
        try:
            await s.client.get(Namespace, "default", "")
            return
        except (Unavailable, Timeout, nats.errors.Error):
            if warn_at and loop.time() >= warn_at:
                _say(f"warning: no API server answers yet (see {api.log})")
                warn_at = 0.0
            await asyncio.sleep(0.2)
        except SteerError:
            return  # an answer, even an error, is an API replica serving


async def _wait_for_nodes(s: Session, names: list[str]) -> None:
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
                if not waiting:
                    return
    except (TimeoutError, SteerError, nats.errors.Error):
        pass  # said below: the agents are supervised all the same
    _say(f"warning: nodes not ready yet: {', '.join(sorted(waiting))} (see their logs)")


async def _apply(s: Session, path: str) -> None:
    for manifest in manifests.read([path]):
        try:
            _say(await apply_manifest(s, manifest, None))
        except SteerError as err:
            report(err, subject=manifest.source)


async def _show_status(s: Session, cluster: LocalCluster) -> None:
    """A live table of the processes and the components they announce, until cancelled."""
    live = Live(auto_refresh=False, console=stdout)
    try:
        live.start()
        while True:
            try:
                components = await discover(s.nc, wait=0.3)
            except nats.errors.Error:
                components = []  # the bus is restarting: the processes are still worth showing
            live.update(_status_table(cluster.children, components), refresh=True)
            await asyncio.sleep(STATUS_REFRESH)
    except OSError:
        return  # the terminal is gone (SIGHUP): nothing to show any more; supervision goes on
    finally:
        with contextlib.suppress(OSError):  # the terminal is gone
            live.stop()


def _status_table(children: list[Child], components: list[ComponentInfo]) -> Table:
    table = Table(title="steersman", title_justify="left", show_edge=False)
    for column in ("PROCESS", "PID", "STATE", "RESTARTS"):
        table.add_column(column)
    for child in children:
        table.add_row(child.name, str(child.pid or "-"), child.state, str(child.restarts))
    table.add_section()
    for component in components:
        table.add_row(component.name, component.metadata.get("instance", component.id), "announced", "")
    return table


def _say(line: str) -> None:
    # When the terminal is gone (SIGHUP) the line is lost, and the cluster still stops cleanly.
    with contextlib.suppress(OSError):
        stdout.print(line, markup=False, highlight=False)
