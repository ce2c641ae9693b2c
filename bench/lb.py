"""The service proxy's cost and fairness: HTTP load straight to one backend, then through the
proxy of a real node agent balancing over three backends, in one run, as ratios.

Everything runs on 127.0.0.1 as separate processes: a nats-server, an API server, one node
agent (fake runtime, its service proxy on), the backends (three tiny keep-alive HTTP servers in
one asyncio process, each answering its name and counting requests), and the load generator:
`wrk` when installed (Debian package `wrk`), else this file's asyncio client in a subprocess.
The Service and its Endpoints are written through the API, as the endpoints controller would.

Two kinds of load, each direct and through the proxy:
- `keep-alive`: each load connection sends request after request (the proxy only pumps bytes);
- `new connection`: `Connection: close`, so every request is a new connection, balanced anew
  (the proxy accepts, picks a backend, connects, pumps and closes each time).
Fairness is max/min of the requests each backend served in the new-connection run.

    .venv/bin/python bench/lb.py [--duration 8] [--connections 16] [--client auto|wrk|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bus import metrics, natsserver, subjects  # noqa: E402
from bus.client import Client  # noqa: E402
from bus.connection import connect  # noqa: E402
from bus.errors import SteerError  # noqa: E402
from bus.meta import ObjectMeta, ObjectReference  # noqa: E402
from bus.resources import Endpoints, Namespace, Service  # noqa: E402
from bus.resources.networking import (  # noqa: E402
    EndpointAddress,
    EndpointPort,
    EndpointSubset,
    ServicePort,
    ServiceSpec,
)

HOST = "127.0.0.1"
NODE = "lb-node"
NAMESPACE = "lb"
BACKENDS = 3


# -- the backends: `python bench/lb.py backends PORT...`


class _Http(asyncio.Protocol):
    """Minimal HTTP/1.1: GET requests without a body; keep-alive unless `Connection: close`."""

    def __init__(self, name: bytes, counts: dict[bytes, int]) -> None:
        self.name, self.counts = name, counts
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            if head.startswith(b"GET /_count"):
                body = json.dumps(self.counts[self.name]).encode()
            else:
                self.counts[self.name] += 1
                body = self.name
            close = b"connection: close" in head.lower()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s"
                % (len(body), b"Connection: close\r\n" if close else b"", body)
            )
            if close:
                self.transport.close()
                return


async def serve_backends(ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    counts: dict[bytes, int] = {}
    for i, port in enumerate(ports):
        name = f"backend-{i}".encode()
        counts[name] = 0
        await loop.create_server(lambda name=name: _Http(name, counts), HOST, port, backlog=1024)  # type: ignore[misc]
    print("ready", flush=True)
    await asyncio.Event().wait()


# -- the fallback load generator: `python bench/lb.py load PORT CONNECTIONS SECONDS CLOSE`


async def generate_load(port: int, connections: int, seconds: float, close: bool) -> None:
    request = b"GET / HTTP/1.1\r\nHost: lb\r\n%s\r\n" % (b"Connection: close\r\n" if close else b"")
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def one_response(reader: asyncio.StreamReader) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)

    async def worker() -> None:
        nonlocal errors
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                if conn is None:
                    conn = await asyncio.open_connection(HOST, port)
                conn[1].write(request)
                await one_response(conn[0])
                latencies.append(time.perf_counter() - started)
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
                conn = None
                continue
            if close:
                conn[1].close()
                conn = None

    await asyncio.gather(*(worker() for _ in range(connections)))
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan")
    print(json.dumps({"rps": len(latencies) / seconds, "p99_ms": p99, "errors": errors}))


# -- driving a run


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start(*args: str, stdout: int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "STEER_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, *args], env=env, cwd=REPO, stdout=stdout)


def load(client: str, port: int, connections: int, seconds: float, close: bool) -> tuple[float, float]:
    """(requests per second, p99 latency in ms) from a separate load-generating process."""
    if client == "wrk":
        args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", f"http://{HOST}:{port}/"]
        if close:
            args[1:1] = ["-H", "Connection: close"]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        value, unit = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return rps, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    cmd = [__file__, "load", str(port), str(connections), str(seconds), "1" if close else "0"]
    proc = start(*cmd, stdout=subprocess.PIPE)
    out_bytes, _ = proc.communicate()
    figures = json.loads(out_bytes)
    return figures["rps"], figures["p99_ms"]


def served_counts(ports: list[int]) -> list[int]:
    counts = []
    for port in ports:
        with socket.create_connection((HOST, port)) as s:
            s.sendall(b"GET /_count HTTP/1.1\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
        counts.append(int(reply.rsplit(b"\r\n\r\n", 1)[1]))
    return counts


async def publish_service(url: str, ports: list[int], service_port: int) -> None:
    """Write the Service and its Endpoints; return once the node's proxy balances over them."""
    nc = await connect(url, name="bench-lb")
    try:
        client = Client(nc)
        await client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
        spec = ServiceSpec(ports=[ServicePort(name="http", port=service_port)], selector={"app": "lb"})
        await client.create(Service(metadata=ObjectMeta(name="lb", namespace=NAMESPACE), spec=spec))
        subsets = [
            EndpointSubset(
                addresses=[
                    EndpointAddress(ip=HOST, target_ref=ObjectReference(kind="Pod", name=f"backend-{i}"))
                ],
                ports=[EndpointPort(name="http", port=port)],
            )
            for i, port in enumerate(ports)
        ]
        reports: asyncio.Queue[metrics.ProxyMetrics] = asyncio.Queue()

        async def on_report(msg: object) -> None:
            await reports.put(metrics.decode_proxy(msg.data))  # type: ignore[attr-defined]

        await nc.subscribe(subjects.metrics_proxy(NODE), cb=on_report)
        await client.create(Endpoints(metadata=ObjectMeta(name="lb", namespace=NAMESPACE), subsets=subsets))
        async with asyncio.timeout(30):
            while True:
                report = await reports.get()
                if any(s.name == "lb" and len(s.endpoints) == len(ports) for s in report.services):
                    return
    finally:
        await nc.close()


async def wait_api(url: str) -> None:
    nc = await connect(url, name="bench-lb-wait")
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    await Client(nc, timeout=1).list(Namespace, "")
                    return
                except SteerError:
                    await asyncio.sleep(0.1)
    finally:
        await nc.close()


def run(args: argparse.Namespace) -> None:
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "asyncio"
    ports = [free_port() for _ in range(BACKENDS)]
    service_port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="steer-lb-") as tmp:
        server = natsserver.start(Path(tmp) / "nats")
        try:
            backends = start(__file__, "backends", *map(str, ports), stdout=subprocess.PIPE)
            procs.append(backends)
            assert backends.stdout is not None and backends.stdout.readline().strip() == b"ready"
            procs.append(start("-m", "services.api", "--nats", server.url))
            asyncio.run(wait_api(server.url))
            agent_args = ["--name", NODE, "--address", HOST, "--runtime", "fake", "--nats", server.url]
            agent_args += ["--metrics-interval", "0.5", "--data-dir", str(Path(tmp) / "nodes")]
            agent_args += ["--proxy", args.policy]
            procs.append(start("-m", "nodeagent", *agent_args))
            asyncio.run(publish_service(server.url, ports, service_port))
            report(client, args, ports, service_port)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)
            server.stop()


def report(client: str, args: argparse.Namespace, ports: list[int], service_port: int) -> None:
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} (other work on the machine)")
    print(f"load: {client}, {args.connections} connections, {args.duration:g}s per run")
    print(f"proxy: node agent on {HOST}:{service_port}, {args.policy}, {BACKENDS} backends")
    print(f"{'load':<16}{'path':<10}{'req/s':>10}{'p99 ms':>10}")
    fairness = 0.0
    for close in (False, True):
        kind = "new connection" if close else "keep-alive"
        direct = load(client, ports[0], args.connections, args.duration, close)
        before = served_counts(ports)
        proxied = load(client, service_port, args.connections, args.duration, close)
        served = [after - was for after, was in zip(served_counts(ports), before, strict=True)]
        for path, (rps, p99) in (("direct", direct), ("proxy", proxied)):
            print(f"{kind:<16}{path:<10}{rps:>10.0f}{p99:>10.2f}")
        print(f"{'':<16}{'ratio':<10}{proxied[0] / direct[0]:>10.2f}{proxied[1] / direct[1]:>10.2f}")
        print(f"{'':<16}per backend through the proxy: {served}")
        if close:
            fairness = max(served) / max(1, min(served))
    print(f"fairness (max/min per backend, new connection per request): {fairness:.3f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "backends":
        asyncio.run(serve_backends([int(p) for p in sys.argv[2:]]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        port, connections, seconds, close = sys.argv[2:6]
        asyncio.run(generate_load(int(port), int(connections), float(seconds), close == "1"))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--client", choices=["auto", "wrk", "asyncio"], default="auto")
    parser.add_argument("--policy", choices=["round-robin", "least-connections"], default="round-robin")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
