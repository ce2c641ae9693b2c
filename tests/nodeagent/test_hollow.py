"""Hollow node agents: many in one process on the fake runtime, for scale tests and benchmarks."""

from __future__ import annotations

import uuid
from pathlib import Path

from bus.client import Client
from bus.meta import ObjectMeta
from bus.resources import Node, Pod
from bus.resources.pod import Container, PodSpec
from bus.store import Store
from tests.nodeagent.conftest import AgentProcess, node_ready
from tests.waiting import wait_for


async def test_hollow_agents_register_and_run_pods(
    client: Client, store: Store, ns: str, nats_url: str, tmp_path: Path
) -> None:
    prefix = f"h{uuid.uuid4().hex[:6]}"
    args = [
        "--name",
        prefix,
        "--hollow",
        "3",
        "--runtime",
        "fake",
        "--nats",
        nats_url,
        "--data-dir",
        str(tmp_path),
    ]
    hollow = AgentProcess(prefix, "127.0.0.1", args, tmp_path / "hollow.log")
    hollow.start()
    try:
        for i in range(3):
            node = await wait_for(store, Node, "", f"{prefix}-{i}", node_ready)
            assert node.status.node_info.container_runtime_version.startswith("fake://")
        spec = PodSpec(containers=[Container(name="main", image="anything")], node_name=f"{prefix}-2")
        await client.create(Pod(metadata=ObjectMeta(name="hollow", namespace=ns), spec=spec))
        await wait_for(store, Pod, ns, "hollow", lambda p: p.status.phase == "Running")
    finally:
        hollow.stop()
