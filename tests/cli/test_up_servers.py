"""`steer up --servers 3`: a three-server NATS cluster on loopback, supervised like the rest;
every component is given all three URLs and the store is kept at three replicas, so losing a
server (SIGKILL) loses nothing and `steer` keeps working."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from bus.connection import Credentials, connect
from tests.cli.conftest import steer_command
from tests.cli.localup import alive, children_of, remember, steer
from tests.cli.test_cli import read_until

NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n"


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports nobody listens on now."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = int(s.getsockname()[1])
        if first + count > 65535:
            continue
        try:
            for port in range(first, first + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue


async def pods_stream(urls: str, admin: Path) -> tuple[int, str]:
    """Replicas and leader of the pods bucket's stream."""
    nc = await connect(urls, name="test", credentials=Credentials(creds_file=str(admin)))
    try:
        info = await nc.jetstream().stream_info("KV_steer-pods")
        assert info.cluster is not None
        return info.config.num_replicas or 0, info.cluster.leader or ""
    finally:
        await nc.close()


def test_up_runs_a_three_server_cluster(tmp_path: Path) -> None:
    port, cluster_port = free_ports(3), free_ports(3)
    urls = ",".join(f"nats://127.0.0.1:{port + i}" for i in range(3))
    args = [*steer_command(), "up", "--data-dir", str(tmp_path), "--servers", "3", "--port", str(port)]
    args += ["--cluster-port", str(cluster_port), "--nodes", "1", "--runtime", "fake"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        try:
            lines = read_until(proc, "ready:")
            assert f"STEER_NATS={urls}" in "".join(lines)
            remember(urls, tmp_path)
            servers = {pid: line for pid, line in children_of(proc.pid).items() if "nats-server" in line}
            assert len(servers) == 3
            for i in range(3):
                conf = (tmp_path / "nats" / f"steer-{i + 1}" / "nats.conf").read_text()
                assert 'include "../../credentials/authorization.conf"' in conf
                assert "sync_interval: always" in conf and f'listen: "127.0.0.1:{port + i}"' in conf
            api = next(line for line in children_of(proc.pid).values() if "services.api" in line)
            assert f"--nats {urls} --replicas 3" in api

            replicas, leader = asyncio.run(pods_stream(urls, tmp_path / "credentials" / "admin.nk"))
            assert replicas == 3
            victim = next(pid for pid, line in servers.items() if f"/{leader}/" in line)
            os.kill(victim, signal.SIGKILL)
            restarted = read_until(proc, f"{leader}: killed by SIGKILL")
            assert restarted
            created = steer(urls, "apply", "-f", "-", stdin=NAMESPACE % "after-kill", timeout=60)
            assert created.returncode == 0, created.stderr
            assert created.stdout.strip() == "namespace/after-kill created"

            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 0
            deadline = time.monotonic() + 10
            while any(alive(pid) for pid in servers) and time.monotonic() < deadline:
                time.sleep(0.05)  # reaped by now, at the latest a moment after `steer up` exits
            assert not any(alive(pid) for pid in servers)
        finally:
            if proc.poll() is None:
                proc.kill()
