"""A cluster of real processes on the pod network, for the pod network's system tests.

Node agents run with `--network pod` and a cluster CIDR of the module's own (no other cluster on
the machine uses it); the node IPAM controller gives each node a /24 of it. Each replica of the
`web` Deployments is busybox httpd on port 80 serving its own hostname (and `ready.html`, its
readiness probe's page, which a test may remove to make it unready).
"""

from __future__ import annotations

import ipaddress
import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest

from bus.client import Client
from bus.meta import LabelSelector, ObjectMeta, is_true
from bus.resources import Deployment, Node, Pod
from bus.resources.apps import DeploymentSpec
from bus.resources.pod import Container, ContainerPort, HTTPGetAction, PodSpec, PodTemplateSpec, Probe
from bus.store import Store
from tests.agents import node_ready
from tests.cluster import ControlPlane
from tests.nodeagent.conftest import IMAGE
from tests.system.test_workloads import rolled_out
from tests.waiting import wait_for

NODES = 2
SERVE_HOSTNAME = (
    "mkdir -p www && busybox hostname > www/index.html && cp www/index.html www/ready.html"
    " && exec busybox httpd -f -p 80 -h www"
)


def cluster_cidr(plane: ControlPlane) -> str:
    return f"10.{160 + plane.subnet % 40}.0.0/16"


@pytest.fixture(scope="module", params=["process", "docker"])
def pod_plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    runtime = str(request.param)
    if runtime == "docker":
        request.getfixturevalue("docker_engine")
    with ControlPlane.running(tmp_path_factory.mktemp(f"podnet-{runtime}")) as plane:
        cidr = cluster_cidr(plane)
        plane.start_scheduler()
        plane.start_controllers("--cluster-cidr", cidr)
        for _ in range(NODES):
            plane.start_agent(runtime, "--network", "pod", "--cluster-cidr", cidr, "--lease", "4,1")
        yield plane


@pytest.fixture
async def pod_cluster(pod_plane: ControlPlane) -> AsyncIterator[tuple[Client, Store, str]]:
    async with pod_plane.connect() as (client, store):
        for agent in pod_plane.agents:
            await wait_for(store, Node, "", agent.name, node_ready)
        yield client, store, await pod_plane.namespace(client)


def web(
    ns: str,
    name: str,
    replicas: int,
    *,
    node: str = "",
    host_port: int | None = None,
    labels: dict[str, str] | None = None,
    host_network: bool = False,
) -> Deployment:
    """`replicas` busybox httpd pods serving their hostname on port 80 (on the host network: on
    $PORT, the host port the agent gives them)."""
    selected = {"app": name}
    serve = SERVE_HOSTNAME.replace("-p 80", "-p $PORT") if host_network else SERVE_HOSTNAME
    labels = {**selected, **(labels or {})}
    container = Container(
        name="httpd",
        image=IMAGE,
        command=["busybox", "sh", "-c", serve],
        ports=[ContainerPort(name="http", container_port=80, host_port=host_port)],
        # Probed at the pod's own address: Ready means it answers there.
        readiness_probe=Probe(http_get=HTTPGetAction(path="/ready.html", port="http"), period_seconds=1),
    )
    selector = {"kubernetes.io/hostname": node} if node else {}
    spec = PodSpec(containers=[container], node_selector=selector, host_network=host_network)
    template = PodTemplateSpec(metadata=ObjectMeta(labels=labels), spec=spec)
    return Deployment(
        metadata=ObjectMeta(name=name, namespace=ns),
        spec=DeploymentSpec(
            replicas=replicas, selector=LabelSelector(match_labels=selected), template=template
        ),
    )


async def serving_pods(client: Client, store: Store, ns: str, name: str, count: int) -> list[Pod]:
    await wait_for(store, Deployment, ns, name, rolled_out(), within=120)
    pods = [
        p
        for p in await client.list(Pod, ns, label_selector=f"app={name}")
        if is_true(p.status.conditions) and p.metadata.deletion_timestamp is None
    ]
    assert len(pods) == count, [p.metadata.name for p in pods]
    return pods


def fetch(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/", timeout=5) as response:  # noqa: S310 (a pod address)
        return str(response.read().decode()).strip()


async def node_cidr(client: Client, name: str) -> ipaddress.IPv4Network:
    node = await client.get(Node, name, "")
    return ipaddress.IPv4Network(node.spec.pod_cidr)
