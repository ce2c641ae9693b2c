"""`steer up` with a running app, one of whose node agents is killed with SIGKILL: the agent that
`steer up` starts again takes back the pods as they were (same pods, same containers, same host
ports, restart counts unchanged, no Warning), and its node serves the Service again.

The process runtime keeps the test's containers to itself: node names are the same in every
`steer up` (node-1, ...), and on a shared Docker engine another cluster's agent of the same name
would take them for its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bus import subjects
from bus.connection import connect
from bus.events import read
from bus.resources import Node
from bus.store import Store
from tests.agents import REPO, kill_processes
from tests.cli.test_up import cluster, free_port, served_by, steer
from tests.waiting import wait_for


def heartbeat_after(moment: datetime) -> Any:
    def check(node: Node) -> bool:
        ready = [c for c in node.status.conditions if c.type == "Ready" and c.status == "True"]
        return any(c.last_heartbeat_time and c.last_heartbeat_time > moment for c in ready)

    return check


async def registered_again(url: str, node: str, since: datetime) -> list[str]:
    """Wait until `node` has registered after `since` (its agent adopts before it registers);
    the Warning events of namespace demo since then."""
    nc = await connect(url, name="test")
    try:
        await wait_for(Store(nc.jetstream()), Node, "", node, heartbeat_after(since), within=90)
        return [
            f"{e.involved_object.name}: {e.reason}: {e.message}"
            async for e in read(nc.jetstream(), subject_filter=subjects.events_filter("demo"))
            if e.type == "Warning" and (e.last_timestamp or since) >= since
        ]
    finally:
        await nc.close()


def agent_pid(node: str, data_dir: Path) -> int:
    """The pid of this cluster's agent of `node`, found by its command line (whatever `steer up`
    prints about it)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = cmdline.read_bytes().split(b"\0")
            if (
                b"nodeagent" in args
                and node.encode() in args
                and any(str(data_dir).encode() in a for a in args)
            ):
                return int(cmdline.parent.name)
    raise AssertionError(f"no node agent {node} runs for {data_dir}")


def pods(url: str) -> dict[str, dict[str, Any]]:
    listed = steer(url, "get", "pods", "-n", "demo", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    return {p["metadata"]["name"]: p for p in json.loads(listed.stdout)["items"]}


def test_a_killed_node_agent_keeps_its_pods(tmp_path: Path) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    demo = str(REPO / "examples" / "demo.yaml")
    try:
        with cluster(tmp_path, port, "--runtime", "process", "--apply", demo) as (proc, _):
            try:
                check_agent_restart(url, tmp_path)
            finally:  # stopped as a user stops it, so that it stops what it started
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                    assert proc.wait(60) == 0
    finally:  # the pods' processes outlive `steer up` by design (the next one adopts them)
        for root in (tmp_path / "nodes").glob("*"):
            with contextlib.suppress(OSError):
                kill_processes(root)


def check_agent_restart(url: str, data_dir: Path) -> None:
    rollout = steer(url, "rollout", "status", "deploy/hello", "-n", "demo", "--timeout", "150s", timeout=180)
    assert rollout.returncode == 0, rollout.stdout + rollout.stderr
    before = pods(url)
    by_node: dict[str, int] = {}
    for p in before.values():
        by_node[p["spec"]["nodeName"]] = by_node.get(p["spec"]["nodeName"], 0) + 1
    node = max(by_node, key=lambda n: by_node[n])  # the node running most of the app

    killed_at = datetime.now(UTC)
    os.kill(agent_pid(node, data_dir), signal.SIGKILL)
    warnings = asyncio.run(registered_again(url, node, killed_at))

    after = pods(url)
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
