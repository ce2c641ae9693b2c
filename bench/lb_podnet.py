"""bench/lb.py's pod-network cluster: a control plane, one node agent with `--network pod`, three
backend pods behind a Service with a ClusterIP, and a client pod whose network namespace the
load generator enters.

Addresses of this run's own (the process id picks them), so that it never meets another
cluster on the machine: the node's loopback address 127.0.251.X, the cluster CIDR 10.Y.0.0/16
(Y in 210-239) and the ClusterIP 10.96.254.X (explicit: the service CIDR's last /24, which an
allocator hands out last).

Process runtime: each backend pod runs `bench/lb_backend.py serve` as its command. Docker runtime
(`busybox:local`, built by scripts/docker-engine): the image has no Python, so each backend pod
runs `sleep` and the bench starts the same server inside the pod's network namespace; the
kernel path measured is the same.

Leaves nothing behind, on every exit path: the agent is stopped, its pods' processes killed or
containers removed, then `python -m nodeagent --clean-up` removes the node's namespaces, veths,
bridge and nftables table.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench.lb_backend import served
from bench.lb_cluster import REPO, Processes, control_plane
from bench.lb_wrk import Route, Target
from bus.client import Client
from bus.connection import connect
from bus.errors import NotFound
from bus.meta import ObjectMeta
from bus.resources import Endpoints, Namespace, Pod, Service
from bus.resources.networking import ServicePort, ServiceSpec
from bus.resources.pod import Container, ContainerPort, HTTPGetAction, PodSpec, Probe
from nodeagent.network import links, names
from nodeagent.runtime.base import LABEL_NODE
from nodeagent.runtime.containerdir import scan
from nodeagent.runtime.procfs import read_stat

NAMESPACE = "lb"
BACKENDS = 3
PORT = 8080  # the backends' container port
SERVICE_PORT = 80
IMAGE = "busybox:local"
BACKEND = str(REPO / "bench" / "lb_backend.py")
SLEEP = ["busybox", "sleep", "1000000"]
# One client pod per path (direct, ClusterIP-1, ClusterIP-3): the connections of two paths never
# share a reply tuple (backend address and port, client address and port), which conntrack would
# refuse to hold twice while the first is in TIME_WAIT (120 s), dropping the second's SYN.
CLIENTS = ["client-direct", "client-one", "client-all"]


def _addresses() -> tuple[str, str, dict[str, str]]:
    """(node address, cluster CIDR, ClusterIP of each Service) of this run."""
    x = 2 + os.getpid() % 250
    cluster_ips = {"lb": f"10.96.254.{x}", "lb-one": f"10.96.253.{x}"}
    return f"127.0.251.{x}", f"10.{210 + os.getpid() % 30}.0.0/16", cluster_ips


@contextlib.contextmanager
def running(tmp: Path, *, runtime: str, workers: int) -> Iterator[Target]:
    node = f"lb-{os.getpid()}"
    address, cidr, cluster_ips = _addresses()
    data = tmp / "nodes"
    servers: list[subprocess.Popen[bytes]] = []  # docker runtime: the backends, in the pods' namespaces
    pods: list[Pod] = []
    with control_plane(tmp) as procs:
        procs.start("services.scheduler")
        procs.start("services.controllers", "--lease", "4,1", "--cluster-cidr", cidr)
        agent_args = ["--name", node, "--address", address, "--runtime", runtime, "--data-dir", str(data)]
        agent_args += ["--network", "pod", "--cluster-cidr", cidr, "--lease", "4,1"]
        agent_args += ["--backoff", "0.5,4,60", "--metrics-interval", "0"]
        agent = procs.start("nodeagent", *agent_args, log="nodeagent")
        try:
            pods = asyncio.run(_deploy(procs, runtime=runtime, workers=workers, cluster_ips=cluster_ips))
            if runtime == "docker":
                for pod in pods[:BACKENDS]:
                    command = [*_enter(pod), sys.executable, BACKEND, "serve", "--workers", str(workers)]
                    command.append(f"{pod.metadata.name}={PORT}")
                    servers.append(subprocess.Popen(command, start_new_session=True))
            backend_ips = asyncio.run(_ready(procs.url))
            clients = pods[BACKENDS:]
            for client in clients:
                _tune_client(_enter(client))
            _wait_balanced(_enter(clients[0]), f"{cluster_ips['lb']}:{SERVICE_PORT}", BACKENDS)
            _wait_balanced(_enter(clients[0]), f"{cluster_ips['lb-one']}:{SERVICE_PORT}", 1)
            addresses = {
                "direct": f"{backend_ips[0]}:{PORT}",
                "ClusterIP-1": f"{cluster_ips['lb-one']}:{SERVICE_PORT}",
                "ClusterIP-3": f"{cluster_ips['lb']}:{SERVICE_PORT}",
            }
            yield Target(
                description=(
                    f"node agent {node} ({runtime} runtime, pod network {cidr}), {BACKENDS} backend pods "
                    f"x {workers} workers; load from pods {', '.join(c.metadata.name for c in clients)}\n"
                    "  direct: backend-0's pod address; ClusterIP-1: Service lb-one, whose one endpoint is\n"
                    f"  backend-0 (the same processes as direct); ClusterIP-3: Service lb, all {BACKENDS}"
                ),
                paths={
                    name: Route(address, tuple(_enter(client)))
                    for (name, address), client in zip(addresses.items(), clients, strict=True)
                },
                balanced="ClusterIP-3",
                counts=lambda: [served(ip, PORT) for ip in backend_ips],
            )
        finally:
            for server in servers:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, signal.SIGKILL)
                server.wait()
            procs.stop(agent)
            _remove_pods(node, data / node, runtime)
            _clean_up_network(node, data)
            if left := _left_behind(node, [p.metadata.uid for p in pods]):
                print(f"warning: left behind: {', '.join(left)}", file=sys.stderr)


def _enter(pod: Pod) -> list[str]:
    return ["nsenter", f"--net=/run/netns/steer-{pod.metadata.uid}"]


def _backend(name: str, *, runtime: str, workers: int) -> Pod:
    if runtime == "docker":
        command = SLEEP
    else:
        command = [sys.executable, BACKEND, "serve", "--workers", str(workers), f"{name}={PORT}"]
    container = Container(
        name="http",
        image=IMAGE,
        command=command,
        ports=[ContainerPort(name="http", container_port=PORT)],
        # /_count is not counted: probes do not disturb the figures.
        readiness_probe=Probe(http_get=HTTPGetAction(path="/_count", port="http"), period_seconds=1),
    )
    labels = {"app": "lb", "backend": name}
    return Pod(
        metadata=ObjectMeta(name=name, namespace=NAMESPACE, labels=labels),
        spec=PodSpec(containers=[container]),
    )


async def _deploy(procs: Processes, *, runtime: str, workers: int, cluster_ips: dict[str, str]) -> list[Pod]:
    """Create the backends, the client and the Services (`lb` over every backend, `lb-one` over
    backend-0); return the pods once they all run (backends first, then the clients)."""
    nc = await connect(procs.url, name="bench-lb")
    try:
        client = Client(nc)
        await client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
        for i in range(BACKENDS):
            await client.create(_backend(f"backend-{i}", runtime=runtime, workers=workers))
        sleeper = PodSpec(containers=[Container(name="client", image=IMAGE, command=SLEEP)])
        for name in CLIENTS:
            await client.create(Pod(metadata=ObjectMeta(name=name, namespace=NAMESPACE), spec=sleeper))
        selectors = {"lb": {"app": "lb"}, "lb-one": {"backend": "backend-0"}}
        for name, selector in selectors.items():
            spec = ServiceSpec(
                ports=[ServicePort(name="http", port=SERVICE_PORT, target_port="http")],
                selector=selector,
                cluster_ip=cluster_ips[name],
            )
            await client.create(Service(metadata=ObjectMeta(name=name, namespace=NAMESPACE), spec=spec))
        names = [f"backend-{i}" for i in range(BACKENDS)] + CLIENTS
        async with asyncio.timeout(120):
            while True:
                pods = [await client.get(Pod, name, NAMESPACE) for name in names]
                if all(p.status.phase == "Running" and p.status.pod_ip for p in pods):
                    return pods
                if exited := procs.exited():
                    raise RuntimeError(f"exited: {exited}; see the logs in {procs.tmp}")
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def _ready(url: str) -> list[str]:
    """The backends' addresses, once the Service's Endpoints hold all of them ready."""
    nc = await connect(url, name="bench-lb-ready")
    try:
        client = Client(nc)
        async with asyncio.timeout(120):
            while True:
                try:
                    endpoints = await client.get(Endpoints, "lb", NAMESPACE)
                except NotFound:
                    endpoints = Endpoints(metadata=ObjectMeta(name="lb"))
                ready = [a for s in endpoints.subsets for a in s.addresses]
                if len(ready) == BACKENDS:
                    by_name = {a.target_ref.name if a.target_ref else "": a.ip for a in ready}
                    return [by_name[f"backend-{i}"] for i in range(BACKENDS)]
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


def _tune_client(enter: list[str]) -> None:
    """As for any load generator: the client's namespace may reuse ports in TIME_WAIT and has the
    whole port range, else tens of thousands of new connections to one address exhaust it (the
    settings are the namespace's own; the node's are left alone)."""
    settings = "echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse"
    settings += "; echo 1024 65535 > /proc/sys/net/ipv4/ip_local_port_range"
    subprocess.run([*enter, "sh", "-c", settings], check=True)


def _wait_balanced(enter: list[str], address: str, backends: int) -> None:
    """Until the ClusterIP answers from the client pod with the names of all its backends."""
    command = [*enter, sys.executable, BACKEND, "names", address, "--expect", str(backends)]
    subprocess.run([*command, "--timeout", "30"], check=True, stdout=subprocess.DEVNULL)


def _remove_pods(node: str, node_dir: Path, runtime: str) -> None:
    """What the node ran outlives its agent by design (for the next agent to adopt): kill it."""
    if runtime == "docker":
        listed = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={LABEL_NODE}={node}"], capture_output=True, text=True
        )
        if ids := listed.stdout.split():
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        return
    for _, state in scan(node_dir) if node_dir.is_dir() else []:
        stat = read_stat(state.pid)
        if stat is not None and stat.start_ticks == state.start_ticks:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state.pid, signal.SIGKILL)
    time.sleep(0.2)  # the killed groups leave their namespaces before these go


def _clean_up_network(node: str, data: Path) -> None:
    command = [sys.executable, "-m", "nodeagent", "--name", node, "--data-dir", str(data), "--clean-up"]
    done = subprocess.run(
        command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True
    )
    if done.returncode != 0:
        print(f"warning: the node's clean-up failed: {done.stderr.strip()}", file=sys.stderr)


def _left_behind(node: str, uids: list[str]) -> list[str]:
    """What of the node's pod network is still there (nothing, after a clean-up)."""
    left = [n for n in map(names.netns, uids) if n in links.netns_names()]
    left += [n for n in [names.bridge(node), *map(names.veth, uids)] if Path("/sys/class/net", n).exists()]
    listed = subprocess.run(["nft", "list", "table", "ip", names.table(node)], capture_output=True)
    return left + ([f"nftables table {names.table(node)}"] if listed.returncode == 0 else [])
