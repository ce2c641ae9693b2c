"""Endpoints in a whole cluster of processes (`steer controllers`, scheduler, two node agents on
the process runtime): each address is a replica's node and allocated host port, serving that
replica, and a replica that fails its readiness probe moves to notReadyAddresses."""

from __future__ import annotations

import asyncio
import os
import sys
from asyncio.subprocess import PIPE
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bus.meta import LabelSelector, ObjectMeta, is_true
from bus.resources import Deployment, Endpoints, Pod, Service
from bus.resources.apps import DeploymentSpec
from bus.resources.networking import ServicePort, ServiceSpec
from bus.resources.pod import Container, ContainerPort, EnvVar, HTTPGetAction, PodSpec, PodTemplateSpec, Probe
from tests.agents import REPO
from tests.cluster import ControlPlane
from tests.waiting import wait_for, wait_for_all

REPLICAS = 3
HTTPD = (
    'mkdir -p "$WWW/$POD_NAME" && cd "$WWW/$POD_NAME" && echo $POD_NAME > index.html'
    " && exec busybox httpd -f -p $HOST_IP:$PORT -h ."
)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane.running(tmp_path_factory.mktemp("endpoints")) as plane:
        plane.start_scheduler()
        plane.start_controllers()
        for _ in range(2):
            plane.start_agent("process")
        yield plane


def web(ns: str, www: Path) -> Deployment:
    labels = {"app": "web"}
    container = Container(
        name="httpd",
        image="busybox",
        command=["sh", "-c", HTTPD],
        env=[EnvVar(name="WWW", value=str(www))],
        ports=[ContainerPort(name="http", container_port=8080)],
        readiness_probe=Probe(
            http_get=HTTPGetAction(path="/", port="http"), period_seconds=1, failure_threshold=1
        ),
    )
    return Deployment(
        metadata=ObjectMeta(name="web", namespace=ns),
        spec=DeploymentSpec(
            replicas=REPLICAS,
            selector=LabelSelector(match_labels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels), spec=PodSpec(containers=[container])
            ),
        ),
    )


async def http_get(host: str, port: int) -> str:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return data.decode().partition("\r\n\r\n")[2].strip()


def ready_count(count: int) -> Callable[[Endpoints], bool]:
    def check(ep: Endpoints) -> bool:
        return sum(len(s.addresses) for s in ep.subsets) == count

    return check


async def test_endpoints_follow_the_replicas_and_their_readiness(plane: ControlPlane, tmp_path: Path) -> None:
    async with plane.connect() as (client, store):
        ns = await plane.namespace(client)
        await client.create(
            Service(
                metadata=ObjectMeta(name="web", namespace=ns),
                spec=ServiceSpec(
                    ports=[ServicePort(port=18080, name="http", target_port="http")], selector={"app": "web"}
                ),
            )
        )
        await client.create(web(ns, tmp_path))
        try:
            pods = await wait_for_all(
                store,
                Pod,
                ns,
                lambda ps: len(ps) == REPLICAS and all(is_true(p.status.conditions) for p in ps),
                within=60,
            )
            ep = await wait_for(store, Endpoints, ns, "web", ready_count(REPLICAS), within=10)
            where = {
                a.target_ref.name: (a.ip, p.port, a.node_name)
                for s in ep.subsets
                for a in s.addresses
                for p in s.ports
                if a.target_ref
            }
            assert where == {
                p.metadata.name: (p.status.host_ip, p.status.host_ports[0].host_port, p.spec.node_name)
                for p in pods
            }
            for name, (ip, port, _) in where.items():
                assert await http_get(ip, port) == name  # the endpoint is that replica

            sick = pods[0].metadata.name
            (tmp_path / sick / "index.html").unlink()  # its readiness probe now fails
            ep = await wait_for(store, Endpoints, ns, "web", ready_count(REPLICAS - 1), within=15)
            assert [a.target_ref.name for s in ep.subsets for a in s.not_ready_addresses if a.target_ref] == [
                sick
            ]

            env = {**os.environ, "STEER_NATS": plane.url}
            shown = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cli.main",
                "get",
                "ep",
                "-n",
                ns,
                stdout=PIPE,
                stderr=PIPE,
                env=env,
                cwd=REPO,
            )
            out, err = await shown.communicate()
            assert shown.returncode == 0, err
            listed = out.decode().splitlines()[1].split()[1].split(",")
            healthy = {f"{ip}:{port}" for name, (ip, port, _) in where.items() if name != sick}
            assert set(listed) == healthy
        finally:
            # Process-runtime replicas are host processes: stop them before the agents go.
            await client.delete(Deployment, "web", ns)
            await wait_for_all(store, Pod, ns, lambda ps: not ps, within=60)
