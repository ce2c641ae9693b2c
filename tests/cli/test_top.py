"""`steer top nodes|pods`: the latest usage samples the stream keeps, in kubectl's columns."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.client import Client as NATS

from bus import metrics, subjects
from bus.client import Client
from bus.meta import ObjectMeta
from bus.resources import Node
from bus.resources.cluster import NodeSpec, NodeStatus
from cli.top import node_rows, pod_rows
from tests.cli.conftest import Result, Steer, steer_command
from tests.cluster import ControlPlane
from tests.metricsbus import publish_node

MI = 1 << 20


def node(name: str, cpu: str = "2", memory: str = "4Gi") -> Node:
    return Node(
        metadata=ObjectMeta(name=name),
        spec=NodeSpec(unschedulable=True),  # no agent runs it: nothing may be placed there
        status=NodeStatus(allocatable={"cpu": cpu, "memory": memory, "pods": "10"}),
    )


def sample(
    name: str, cpu: int, memory: int, pods: list[metrics.PodMetrics] | None = None
) -> metrics.NodeMetrics:
    return metrics.NodeMetrics(
        node=name,
        timestamp=datetime.now(UTC),
        window_seconds=5,
        cpu_millicores=cpu,
        memory_bytes=memory,
        pods=pods or [],
    )


def pod_usage(namespace: str, name: str, cpu: int, memory: int, containers: int = 1) -> metrics.PodMetrics:
    return metrics.PodMetrics(
        namespace=namespace,
        name=name,
        uid=uuid.uuid4().hex,
        cpu_millicores=cpu,
        memory_bytes=memory,
        containers=[
            metrics.ContainerMetrics(
                name=f"c{i}", cpu_millicores=cpu // containers, memory_bytes=memory // containers
            )
            for i in range(containers)
        ],
    )


def table(result: Result) -> list[list[str]]:
    assert result.code == 0, result.err
    return [line.split() for line in result.out.splitlines() if line.strip()]


# -- rendering


def test_node_rows_show_usage_against_allocatable_and_unknown_last() -> None:
    nodes = [node("b", cpu="2", memory="4Gi"), node("a", cpu="500m", memory="1Gi"), node("silent")]
    samples = [sample("a", 250, 256 * MI), sample("b", 1500, 1024 * MI)]
    assert node_rows(nodes, samples) == [
        ["a", "250m", "50%", "256Mi", "25%"],
        ["b", "1500m", "75%", "1024Mi", "25%"],
        ["silent", "<unknown>", "<unknown>", "<unknown>", "<unknown>"],
    ]
    assert [r[0] for r in node_rows(nodes, samples, "cpu")] == ["b", "a", "silent"]


def test_pod_rows_per_namespace_per_container_and_sorted() -> None:
    samples = [
        sample(
            "n1",
            0,
            0,
            [pod_usage("x", "web-1", 120, 30 * MI, containers=2), pod_usage("y", "db", 5, 300 * MI)],
        ),
        sample("n2", 0, 0, [pod_usage("x", "web-2", 300, 10 * MI)]),
    ]
    assert pod_rows(samples, "x") == [["web-1", "120m", "30Mi"], ["web-2", "300m", "10Mi"]]
    assert pod_rows(samples, "x", sort_by="cpu")[0][0] == "web-2"
    assert pod_rows(samples, subjects.ALL, sort_by="memory")[0] == ["y", "db", "5m", "300Mi"]
    assert pod_rows(samples, "x", names=["web-1"], containers=True) == [
        ["web-1", "c0", "60m", "15Mi"],
        ["web-1", "c1", "60m", "15Mi"],
    ]


# -- the command, against the bus


@pytest.fixture
async def hand_made_nodes(client: Client) -> AsyncIterator[list[str]]:
    names = [f"top-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    for name in names:
        await client.create(node(name))
    yield names
    for name in names:
        await client.delete(Node, name, "")


async def test_top_nodes(steer: Steer, nc: NATS, hand_made_nodes: list[str]) -> None:
    busy, idle, silent = hand_made_nodes
    await publish_node(nc, busy, [], cpu=1000, memory=2048 * MI)
    await publish_node(nc, idle, [], cpu=20, memory=512 * MI)
    stale = datetime.now(UTC) - timedelta(minutes=5)
    await publish_node(nc, silent, [], cpu=900, memory=MI, timestamp=stale)  # an agent that stopped

    rows = table(steer("top", "nodes", busy, idle, silent, "--sort-by", "cpu"))
    assert rows == [
        ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"],
        [busy, "1000m", "50%", "2048Mi", "50%"],
        [idle, "20m", "1%", "512Mi", "12%"],
        [silent, "<unknown>", "<unknown>", "<unknown>", "<unknown>"],
    ]
    assert [r[0] for r in table(steer("top", "node", idle))[1:]] == [idle]

    missing = steer("top", "nodes", "no-such-node")
    assert missing.code == 1 and missing.err_lines == ['error: nodes "no-such-node" not found']
    bad = steer("top", "nodes", "--sort-by", "age")
    assert bad.code == 2 and 'unknown field "age"' in bad.err


async def test_top_pods(steer: Steer, nc: NATS, namespace: str, hand_made_nodes: list[str]) -> None:
    n1, n2, _ = hand_made_nodes
    other = f"{namespace}-other"
    await publish_node(
        nc, n1, [pod_usage(namespace, "web-1", 250, 64 * MI, containers=2), pod_usage(other, "x", 1, MI)]
    )
    await publish_node(nc, n2, [pod_usage(namespace, "web-2", 400, 32 * MI)])

    assert table(steer("top", "pods", "-n", namespace)) == [
        ["NAME", "CPU(cores)", "MEMORY(bytes)"],
        ["web-1", "250m", "64Mi"],
        ["web-2", "400m", "32Mi"],
    ]
    assert table(steer("top", "pod", "web-1", "-n", namespace, "--containers")) == [
        ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"],
        ["web-1", "c0", "125m", "32Mi"],
        ["web-1", "c1", "125m", "32Mi"],
    ]
    everywhere = table(steer("top", "pods", "-A", "--sort-by", "memory"))
    assert everywhere[0] == ["NAMESPACE", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    mine = [r for r in everywhere if r[0] in (namespace, other)]
    assert mine == [
        [namespace, "web-1", "250m", "64Mi"],
        [namespace, "web-2", "400m", "32Mi"],
        [other, "x", "1m", "1Mi"],
    ]

    empty = steer("top", "pods", "-n", f"{namespace}-empty")
    assert (
        empty.code == 0
        and empty.out == ""
        and empty.err_lines == [f"No resources found in {namespace}-empty namespace."]
    )
    absent = steer("top", "pods", "nope", "-n", namespace)
    assert absent.code == 1 and "no metrics for pod nope" in absent.err


@pytest.fixture(scope="module")
def bare_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A cluster no node agent ever joined: no sample at all."""
    with ControlPlane.running(tmp_path_factory.mktemp("top")) as plane:
        yield plane


def test_top_without_any_metrics_says_so(bare_plane: ControlPlane) -> None:
    for what in ("nodes", "pods"):
        env = {**os.environ, "STEER_NATS": bare_plane.url}
        proc = subprocess.run(
            [*steer_command(), "top", what], capture_output=True, text=True, env=env, timeout=60
        )
        assert proc.returncode == 1
        assert proc.stderr.startswith("error: metrics not available yet: no node agent has published"), (
            proc.stderr
        )
        assert "Traceback" not in proc.stderr
