"""`steer down`: stop the `steer up` of a data dir and remove every container its nodes made."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import steer_command
from tests.cli.localup import LocalUp, alive, eventually, local_up, node_prefix

POD = """apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  containers:
    - {name: main, image: busybox:local, command: ["sleep", "600"]}
"""


def down(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*steer_command(), "down", "--data-dir", str(data_dir), *extra],
        capture_output=True,
        text=True,
        timeout=180,
    )


def run_sleeper(up: LocalUp) -> None:
    assert up.steer("apply", "-f", "-", stdin=POD).returncode == 0
    ready = up.steer("wait", "--for=condition=Ready", "pod/sleeper", "--timeout", "60s")
    assert ready.returncode == 0, ready.stderr


def process_containers(data_dir: Path) -> list[int]:
    """The pids of the process runtime's containers under the data dir (from its files)."""
    return [json.loads(path.read_text())["pid"] for path in (data_dir / "nodes").glob("*/*/*/*.json")]


def docker_containers(node: str) -> list[str]:
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=steersman.io/node={node}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


def test_down_stops_a_running_up_and_kills_its_process_containers(tmp_path: Path) -> None:
    with local_up(tmp_path, nodes=1) as up:
        run_sleeper(up)
        [container] = process_containers(tmp_path)
        assert alive(container)
        children = up.children()
        result = down(tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"stopping steer up (pid {up.proc.pid})" in result.stdout
        assert f"removed 1 container of nodes {up.prefix}-*" in result.stdout
        assert up.proc.wait(10) == 0  # stopped as by Ctrl-C: services first, the bus last
        assert up.proc.stdout is not None and "stopped" in up.proc.stdout.read()
        assert eventually(lambda: not alive(container))
        assert not any(alive(pid) for pid in children)
        assert not (tmp_path / "nodes").exists()
        assert (tmp_path / "nats").is_dir()  # the store is kept without --purge


@pytest.mark.docker
def test_ctrl_c_leaves_docker_containers_that_down_removes_with_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "cluster"
    prefix = node_prefix()
    node = f"{prefix}-1"
    other_node = f"{node_prefix()}-1"  # another cluster's node, on the same engine
    label = f"steersman.io/node={other_node}"
    other = subprocess.run(
        ["docker", "run", "-d", "--label", label, "busybox:local", "sleep", "600"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        with local_up(data_dir, nodes=1, runtime="docker", prefix=prefix) as up:
            run_sleeper(up)
            [container] = docker_containers(node)
            up.proc.send_signal(signal.SIGINT)
            assert up.proc.wait(60) == 0
        assert docker_containers(node) == [container]  # kept running for the next steer up to adopt
        result = down(data_dir, "--purge")
        assert result.returncode == 0, result.stderr
        assert "stopping steer up" not in result.stdout  # none was running
        assert f"removed 1 container of nodes {prefix}-*" in result.stdout
        assert docker_containers(node) == []
        assert not data_dir.exists()
        assert docker_containers(other_node) == [other[:12]]  # not one of this cluster's nodes
    finally:
        subprocess.run(["docker", "rm", "-f", other, *docker_containers(node)], capture_output=True)


def test_down_without_a_cluster_says_so(tmp_path: Path) -> None:
    result = down(tmp_path / "nothing")
    assert result.returncode == 0, result.stderr
    assert f"no cluster in {tmp_path / 'nothing'}" in result.stdout


def test_down_never_removes_a_directory_steer_up_did_not_make(tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    result = down(tmp_path, "--purge")
    assert result.returncode == 1
    assert f"error: {tmp_path} is not the data dir of a steer up" in result.stderr
    assert precious.read_text() == "keep me"


def test_a_killed_up_leaves_the_pods_containers_to_the_next_one(tmp_path: Path) -> None:
    prefix = node_prefix()
    with local_up(tmp_path, nodes=1, prefix=prefix) as up:
        run_sleeper(up)
        [container] = process_containers(tmp_path)
        children = up.children()
        up.proc.send_signal(signal.SIGKILL)
        up.proc.wait(10)
        assert eventually(lambda: not any(alive(pid) for pid in children))
    assert alive(container)  # not a child of steer up: the kernel did not kill it
    with local_up(tmp_path, nodes=1, prefix=prefix) as again:
        pod = json.loads(again.steer("get", "pod", "sleeper", "-o", "json").stdout)
        assert pod["status"]["containerStatuses"][0].get("restartCount", 0) == 0
        assert process_containers(tmp_path) == [container]  # adopted, not started again
        assert down(tmp_path).returncode == 0
    assert not alive(container)
