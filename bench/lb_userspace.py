"""bench/lb.py `--mode userspace`: the userspace service proxy of host-network mode.

Everything runs on 127.0.0.1 in the host's namespace: a nats-server, an API server, one node agent
(fake runtime, `--network host`, its service proxy on), and the backends (three listeners of
`bench/lb_backend.py serve`, one worker process each). The Service and its Endpoints are written
through the API, as the endpoints controller would; the balanced address is the proxy's port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from bench.lb_backend import served
from bench.lb_cluster import control_plane
from bench.lb_podnet import BACKEND
from bench.lb_wrk import Route, Target
from bus import metrics, subjects
from bus.client import Client
from bus.connection import connect
from bus.meta import ObjectMeta, ObjectReference
from bus.resources import Endpoints, Namespace, Service
from bus.resources.networking import EndpointAddress, EndpointPort, EndpointSubset, ServicePort, ServiceSpec

HOST = "127.0.0.1"
NODE = "lb-node"
NAMESPACE = "lb"
BACKENDS = 3


@contextlib.contextmanager
def running(tmp: Path, *, policy: str) -> Iterator[Target]:
    ports = [free_port() for _ in range(BACKENDS)]
    service_port = free_port()
    listeners = [f"backend-{i}={port}" for i, port in enumerate(ports)]
    backends = subprocess.Popen(
        [sys.executable, BACKEND, "serve", "--workers", "1", "--host", HOST, *listeners]
    )
    try:
        with control_plane(tmp) as procs:
            agent_args = ["--name", NODE, "--address", HOST, "--runtime", "fake", "--network", "host"]
            agent_args += ["--metrics-interval", "0.5", "--data-dir", str(tmp / "nodes"), "--proxy", policy]
            procs.start("nodeagent", *agent_args)
            asyncio.run(publish_service(procs.url, ports, service_port))
            yield Target(
                description=f"userspace proxy of node agent {NODE} on {HOST}:{service_port} ({policy}), "
                f"{BACKENDS} backends x 1 worker; load from the host",
                paths={"direct": Route(f"{HOST}:{ports[0]}"), "proxy": Route(f"{HOST}:{service_port}")},
                balanced="proxy",
                counts=lambda: [served(HOST, port) for port in ports],
            )
    finally:
        backends.terminate()
        backends.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


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
