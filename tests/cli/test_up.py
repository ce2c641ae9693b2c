"""`steer up`: a whole local cluster from one command, stopped cleanly, with state kept."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.agents import REPO
from tests.cli.conftest import steer_command
from tests.cli.localup import alive, free_port, remember, steer
from tests.cli.test_cli import read_until


@contextlib.contextmanager
def cluster(data_dir: Path, port: int, *extra: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    args = [*steer_command(), "up", "--data-dir", str(data_dir), "--port", str(port), "--api-replicas", "2"]
    args += ["--nodes", "2", *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    remember(f"nats://127.0.0.1:{port}", data_dir)
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        try:
            yield proc, read_until(proc, "ready:")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            # What the nodes made (pods, their networks) outlives steer up by design.
            subprocess.run(
                [*steer_command(), "down", "--data-dir", str(data_dir)], capture_output=True, timeout=120
            )


def served_by(url: str, *, expected: set[str], within: float = 30) -> set[str]:
    """The pages answered at `url` until every expected one has been, or `within` seconds pass
    (a proxy learns the endpoints within a second or so of their readiness)."""
    seen: set[str] = set()
    deadline = time.monotonic() + within
    while seen != expected and time.monotonic() < deadline:
        try:
            seen.add(urllib.request.urlopen(url, timeout=5).read().decode().strip())  # noqa: S310
        except OSError:
            time.sleep(0.1)  # not listening yet: ask again shortly
    return seen


NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: kept}\n"


def test_up_runs_stops_cleanly_and_keeps_state(tmp_path: Path) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    with cluster(tmp_path, port) as (proc, lines):
        pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", "".join(lines))]
        assert len(pids) == 6  # two API replicas, the scheduler, the controllers, two node agents
        status = steer(url, "status")
        assert status.returncode == 0, status.stderr
        assert sum(line.startswith("steer-api") for line in status.stdout.splitlines()) == 2
        assert sum(line.startswith("steer-nodeagent") for line in status.stdout.splitlines()) == 2
        assert sum(line.startswith("steer-scheduler") for line in status.stdout.splitlines()) == 1
        assert sum(line.startswith("steer-controllers") for line in status.stdout.splitlines()) == 1
        nodes = json.loads(steer(url, "get", "nodes", "-o", "json").stdout)["items"]
        addresses = {n["metadata"]["name"]: n["status"]["addresses"][0]["address"] for n in nodes}
        assert addresses == {"node-1": "127.0.0.11", "node-2": "127.0.0.12"}
        runtimes = {n["status"]["nodeInfo"]["containerRuntimeVersion"].split(":")[0] for n in nodes}
        assert runtimes <= {"docker", "process"}
        assert steer(url, "apply", "-f", "-", stdin=NAMESPACE).stdout.strip() == "namespace/kept created"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert proc.stdout is not None and "stopped" in proc.stdout.read()
    assert not any(alive(pid) for pid in pids)
    assert steer(url, "get", "ns").returncode == 1  # the bus is gone too

    with cluster(tmp_path, port) as (proc, _):
        names = steer(url, "get", "ns", "-o", "name").stdout.split()
        assert "namespace/kept" in names and "namespace/default" in names
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_up_runs_the_demo_app(tmp_path: Path) -> None:
    """What the README's main command deploys: busybox httpd replicas, each serving its pod's name."""
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    with cluster(tmp_path, port, "--apply", str(REPO / "examples" / "demo.yaml")) as (proc, _):
        rollout = steer(
            url, "rollout", "status", "deploy/hello", "-n", "demo", "--timeout", "150s", timeout=180
        )
        assert rollout.returncode == 0, rollout.stdout + rollout.stderr
        assert 'deployment "hello" successfully rolled out' in rollout.stdout
        pods = json.loads(steer(url, "get", "pods", "-n", "demo", "-o", "json").stdout)["items"]
        assert len(pods) == 3
        for pod in pods:  # each at its own address as root (the pod network), else at a host port
            if os.geteuid() == 0:
                assert pod["status"]["podIP"] != pod["status"]["hostIP"]
                where = f"{pod['status']['podIP']}:8080"
            else:
                where = f"{pod['status']['hostIP']}:{pod['status']['hostPorts'][0]['hostPort']}"
            page = urllib.request.urlopen(f"http://{where}/", timeout=5).read()  # noqa: S310 (local)
            assert page.decode().strip() == f"hello from {pod['metadata']['name']}"
        # Through the Service: its LoadBalancer port on every node's address spreads requests.
        names = {f"hello from {pod['metadata']['name']}" for pod in pods}
        endpoints = steer(url, "get", "endpoints", "hello", "-n", "demo")
        assert endpoints.returncode == 0 and endpoints.stdout.count(":") >= 3, endpoints.stdout
        node = json.loads(steer(url, "get", "nodes", "-o", "json").stdout)["items"][0]
        address = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        assert served_by(f"http://{address}:8080/", expected=names) == names
        # Pods outlive `steer up` by design (the next one adopts them): delete them first.
        deleted = steer(url, "delete", "deployment", "hello", "-n", "demo")
        assert deleted.returncode == 0, deleted.stderr
        gone = steer(
            url,
            "wait",
            "--for=delete",
            "pods",
            "-l",
            "app=hello",
            "-n",
            "demo",
            "--timeout",
            "60s",
            timeout=90,
        )
        assert gone.returncode == 0, gone.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
