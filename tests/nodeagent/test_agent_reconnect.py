"""A node agent cut off from the bus re-lists at once when it is back: the pod feed and the service
proxy's Service and Endpoints feeds are core NATS, so whatever was published while it was away is
lost, and only the re-listing on reconnect (`Link.on_reconnect`) brings it (the periodic re-listing
is an hour away here)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from bus.client import Client
from bus.meta import ObjectMeta, ObjectReference
from bus.resources import Endpoints, Node, Pod, Service
from bus.resources.networking import EndpointAddress, EndpointPort, EndpointSubset, ServicePort, ServiceSpec
from bus.resources.pod import Container, PodSpec
from bus.store import Store
from tests.agents import AgentProcess, node_ready
from tests.faults import Relay
from tests.proxyreports import proxy_reports
from tests.waiting import wait_for

SERVICE_PORT = 18900  # this node's own address: no other test's agent listens there


def bound_pod(name: str, namespace: str, node: str) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=PodSpec(node_name=node, containers=[Container(name="main", image="busybox:local")]),
    )


def service_with_endpoints(name: str, namespace: str, pod: Pod) -> tuple[Service, Endpoints]:
    service = Service(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=ServiceSpec(ports=[ServicePort(name="http", port=SERVICE_PORT, target_port="http")]),
    )
    subset = EndpointSubset(
        addresses=[
            EndpointAddress(
                ip="127.0.0.1",
                target_ref=ObjectReference(kind="Pod", name=pod.metadata.name, uid=pod.metadata.uid),
            )
        ],
        ports=[EndpointPort(name="http", port=1)],
    )
    return service, Endpoints(metadata=ObjectMeta(name=name, namespace=namespace), subsets=[subset])


async def test_an_agent_back_from_a_cut_lists_its_pods_and_services_at_once(
    nats_url: str, nc: Any, client: Client, store: Store, ns: str, tmp_path: Path
) -> None:
    async with Relay(nats_url) as relay:
        name = f"n{uuid.uuid4().hex[:8]}"
        args = ["--name", name, "--address", "127.0.99.2", "--runtime", "fake", "--nats", relay.url]
        args += ["--resync", "3600", "--metrics-interval", "0.3", "--data-dir", str(tmp_path / "nodes")]
        agent = AgentProcess(name, "127.0.99.2", args, tmp_path / f"{name}.log")
        agent.start()
        try:
            await wait_for(store, Node, "", name, node_ready)
            async with proxy_reports(nc, name) as reports:
                async with relay.cut():
                    pod = await client.create(bound_pod("while-away", ns, name))
                    service, endpoints = service_with_endpoints("web", ns, pod)
                    await client.create(service)
                    await client.create(endpoints)
                await wait_for(store, Pod, ns, "while-away", lambda p: p.status.phase == "Running")
                await reports.serving(ns, "web", {"while-away"})
        finally:
            agent.stop()
