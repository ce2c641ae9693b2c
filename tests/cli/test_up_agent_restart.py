"""`steer up` with a running app, one of whose node agents is killed with SIGKILL: the agent that
`steer up` starts again takes back the pods as they were (same pods, same containers, same host
ports, restart counts unchanged, no Warning), and its node serves the Service again. On Docker
(the default where an engine answers, as in the report this reproduces) and on the process
runtime; node names of their own, so that no other cluster on the engine meets these."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bus import subjects
from bus.connection import connect
from bus.events import read
from bus.resources import Node
from bus.store import Store
from tests.agents import REPO, kill_processes, remove_containers
from tests.cli.localup import LocalUp, local_up
from tests.cli.test_up import served_by
from tests.nodeagent.conftest import docker_engine  # noqa: F401  (a fixture)
from tests.waiting import wait_for

NODES = 2


def heartbeat_after(moment: datetime) -> Any:
    def check(node: Node) -> bool:
        ready = [c for c in node.status.conditions if c.type == "Ready" and c.status == "True"]
        return any(c.last_heartbeat_time and c.last_heartbeat_time > moment for c in ready)

    return check


async def registered_again(up: LocalUp, node: str, since: datetime) -> list[str]:
    """Wait until `node` has registered after `since` (its agent adopts before it registers);
    the Warning events of namespace demo since then."""
    nc = await connect(up.url, name="test", credentials=up.admin)
    try:
        await wait_for(Store(nc.jetstream()), Node, "", node, heartbeat_after(since), within=90)
        return [
            f"{e.involved_object.name}: {e.reason}: {e.message}"
            async for e in read(nc.jetstream(), subject_filter=subjects.events_filter("demo"))
            if e.type == "Warning" and (e.last_timestamp or since) >= since
        ]
    finally:
        await nc.close()


def pods(up: LocalUp) -> dict[str, dict[str, Any]]:
    listed = up.steer("get", "pods", "-n", "demo", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    return {p["metadata"]["name"]: p for p in json.loads(listed.stdout)["items"]}


@pytest.mark.parametrize("runtime", [pytest.param("docker", marks=pytest.mark.docker), "process"])
def test_a_killed_node_agent_keeps_its_pods(
    runtime: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if runtime == "docker":
        request.getfixturevalue("docker_engine")
    demo = str(REPO / "examples" / "demo.yaml")
    nodes: list[str] = []
    try:
        with local_up(tmp_path, "--api-replicas", "2", "--apply", demo, nodes=NODES, runtime=runtime) as up:
            nodes = [f"{up.prefix}-{i + 1}" for i in range(NODES)]
            try:
                check_agent_restart(up)
            finally:  # stopped as a user stops it; the pods outlive it by design
                if up.proc.poll() is None:
                    up.proc.send_signal(signal.SIGINT)
                    assert up.proc.wait(60) == 0
    finally:
        for node in nodes:
            remove_containers(node)
            with contextlib.suppress(OSError):
                kill_processes(tmp_path / "nodes" / node)


def check_agent_restart(up: LocalUp) -> None:
    rollout = up.steer("rollout", "status", "deploy/hello", "-n", "demo", "--timeout", "150s")
    assert rollout.returncode == 0, rollout.stdout + rollout.stderr
    before = pods(up)
    by_node: dict[str, int] = {}
    for p in before.values():
        by_node[p["spec"]["nodeName"]] = by_node.get(p["spec"]["nodeName"], 0) + 1
    node = max(by_node, key=lambda n: by_node[n])  # the node running most of the app

    killed_at = datetime.now(UTC)
    os.kill(up.child(f"--name {node} "), signal.SIGKILL)
    warnings = asyncio.run(registered_again(up, node, killed_at))

    after = pods(up)
    assert after.keys() == before.keys()  # none deleted and replaced
    for name, old in before.items():
        new = after[name]
        assert new["metadata"]["uid"] == old["metadata"]["uid"]
        assert new["status"]["phase"] == "Running"
        assert new["status"]["hostPorts"] == old["status"]["hostPorts"]
        assert new["status"]["containerStatuses"] == old["status"]["containerStatuses"]
    assert warnings == []
    addresses = {p["status"]["hostIP"] for p in after.values() if p["spec"]["nodeName"] == node}
    names = {f"hello from {name}" for name in after}
    assert served_by(f"http://{addresses.pop()}:8080/", expected=names) == names
