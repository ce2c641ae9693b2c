"""Services on the pod network: a ClusterIP from the API, forwarded by every node's kernel
(nftables), found by name through the node's cluster DNS, with real pods of both runtimes.

The load comes from inside a client pod (`steer exec` of busybox wget by the Service's DNS
name), so the whole path is the one an application takes: resolv.conf, the node's DNS server,
the ClusterIP, the node's nftables rules, the backend pod's address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import subprocess
import time
from collections import Counter

import msgspec

from bus.client import Client
from bus.meta import ObjectMeta, is_true
from bus.resources import Endpoints, Pod, Service
from bus.resources.networking import NetworkPolicy, ServicePort, ServiceSpec
from bus.store import Store
from nodeagent.network.nft import Table
from tests.cluster import ControlPlane
from tests.system.podnet import fetch, serving_pods, web
from tests.system.test_workloads import steer
from tests.waiting import eventually, wait_for

SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/16")


def service(ns: str, name: str, port: int = 80) -> Service:
    ports = [ServicePort(name="http", port=port, target_port="http")]
    spec = ServiceSpec(ports=ports, selector={"app": name})
    return Service(metadata=ObjectMeta(name=name, namespace=ns), spec=spec)


def in_pod(plane: ControlPlane, pod: Pod, script: str, *, timeout: float = 120) -> str:
    done = steer(
        plane, "exec", pod.metadata.name, "-n", pod.metadata.namespace, "--timeout", str(timeout),
        "--", "busybox", "sh", "-c", script, timeout=timeout + 30,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def ready_endpoints(store: Store, ns: str, name: str, count: int) -> Endpoints:
    def ready(e: Endpoints) -> bool:
        return sum(len(s.addresses) for s in e.subsets) == count

    return await wait_for(store, Endpoints, ns, name, ready, within=120)


async def test_requests_by_service_name_from_a_pod_spread_evenly_over_the_replicas(
    pod_plane: ControlPlane, pod_cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = pod_cluster
    server_node, client_node = pod_plane.agents[0].name, pod_plane.agents[1].name
    created = await client.create(service(ns, "web"))
    assert ipaddress.IPv4Address(created.spec.cluster_ip) in SERVICE_CIDR
    await client.create(web(ns, "web", 3, node=server_node))
    await client.create(web(ns, "client", 1, node=client_node))
    replicas = {p.metadata.name for p in await serving_pods(client, store, ns, "web", 3)}
    (client_pod,) = await serving_pods(client, store, ns, "client", 1)
    await ready_endpoints(store, ns, "web", 3)
    url = f"http://web.{ns}.svc.cluster.local/"
    script = f"i=0; while [ $i -lt 300 ]; do busybox wget -q -O - {url}; i=$((i+1)); done"
    answers = Counter(
        line for line in (await asyncio.to_thread(in_pod, pod_plane, client_pod, script)).split()
    )
    print(f"\n300 requests to {url} from a pod: {dict(answers)}")
    assert set(answers) == replicas and sum(answers.values()) == 300
    assert max(answers.values()) / min(answers.values()) <= 1.2
    # The name resolves to the ClusterIP, and the short name through the pod's search path.
    lookup = f"busybox nslookup web.{ns}.svc.cluster.local. 2>&1; true"  # (it fails on AAAA)
    assert created.spec.cluster_ip in await asyncio.to_thread(in_pod, pod_plane, client_pod, lookup)
    short = await asyncio.to_thread(in_pod, pod_plane, client_pod, "busybox wget -q -O - http://web/")
    assert short.strip() in replicas
    # A replica reaches its own Service, itself included (hairpin).
    replica = (await serving_pods(client, store, ns, "web", 3))[0]
    script = "for i in 1 2 3 4 5 6; do busybox wget -q -O - http://web/; done"
    assert set((await asyncio.to_thread(in_pod, pod_plane, replica, script)).split()) == replicas


async def test_a_replica_that_fails_readiness_leaves_the_kernels_rules(
    pod_plane: ControlPlane, pod_cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = pod_cluster
    node = pod_plane.agents[0]
    await client.create(service(ns, "web"))
    await client.create(web(ns, "web", 3, node=node.name))
    pods = await serving_pods(client, store, ns, "web", 3)
    await ready_endpoints(store, ns, "web", 3)
    table = Table.for_node(node.name)

    async def rules_hold(address: str) -> bool:
        return f"dnat to {address}:" in await nft_text(table)

    for pod in pods:
        address = pod.status.pod_ip
        await eventually(lambda address=address: rules_hold(address))  # type: ignore[misc]
    leaving = pods[0]
    await asyncio.to_thread(in_pod, pod_plane, leaving, "rm www/ready.html")
    await wait_for(store, Pod, ns, leaving.metadata.name, lambda p: not is_true(p.status.conditions))
    unready = time.monotonic()  # the node agent has written the pod's Ready condition False

    async def gone() -> bool:
        return not await rules_hold(leaving.status.pod_ip)

    await eventually(gone, within=30, every=0.02)
    took = time.monotonic() - unready
    print(f"\nan unready replica left node {node.name}'s rules {took:.2f}s after it was marked unready")
    assert all([await rules_hold(p.status.pod_ip) for p in pods[1:]])


async def nft_text(table: Table) -> str:
    """The table as `nft list table` prints it (rules as written)."""
    listed = await asyncio.to_thread(
        subprocess.run, ["nft", "list", "table", *str(table).split()], capture_output=True, text=True
    )
    return listed.stdout


async def test_the_kernel_keeps_forwarding_while_the_agent_is_away(
    pod_plane: ControlPlane, pod_cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = pod_cluster
    agent = pod_plane.agents[0]
    created = await client.create(service(ns, "web"))
    await client.create(web(ns, "web", 2, node=agent.name))
    names = {p.metadata.name for p in await serving_pods(client, store, ns, "web", 2)}
    await ready_endpoints(store, ns, "web", 2)
    address = created.spec.cluster_ip
    await eventually(lambda: answers_from(address, names))
    agent.kill()
    try:
        assert await answers_from(address, names, count=20)  # from the node itself: the output hook
    finally:
        agent.start()


async def answers_from(address: str, names: set[str], *, count: int = 4) -> bool:
    try:
        return all([await asyncio.to_thread(fetch, address) in names for _ in range(count)])
    except OSError:
        return False


async def test_a_port_change_keeps_open_connections_and_sends_new_ones_to_the_new_port(
    pod_plane: ControlPlane, pod_cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = pod_cluster
    created = await client.create(service(ns, "web"))
    await client.create(web(ns, "web", 1, node=pod_plane.agents[1].name))
    (pod,) = await serving_pods(client, store, ns, "web", 1)
    await ready_endpoints(store, ns, "web", 1)
    address = created.spec.cluster_ip
    await eventually(lambda: answers_from(address, {pod.metadata.name}))
    with socket.create_connection((address, 80), timeout=10) as held:  # open before the change
        changed = await client.get(Service, "web", ns)
        changed.spec.ports[0].port = 8080
        await client.update(changed)
        await eventually(lambda: answers_from(f"{address}:8080", {pod.metadata.name}))
        held.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reply = await asyncio.to_thread(read_all, held)
    assert reply.startswith(b"HTTP/1.") and pod.metadata.name.encode() in reply

    async def port_80_refused() -> bool:  # once every node's table has the change
        return not await answers_from(address, {pod.metadata.name}, count=1)

    await eventually(port_80_refused)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


async def test_containers_find_services_at_their_cluster_ip_in_the_environment(
    pod_plane: ControlPlane, pod_cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = pod_cluster
    created = await client.create(service(ns, "web"))
    await client.create(web(ns, "client", 1, node=pod_plane.agents[0].name))  # started after the Service
    (client_pod,) = await serving_pods(client, store, ns, "client", 1)
    env = await asyncio.to_thread(in_pod, pod_plane, client_pod, "echo $WEB_SERVICE_HOST:$WEB_SERVICE_PORT")
    assert env.strip() == f"{created.spec.cluster_ip}:80"


def policy(ns: str, name: str, spec: dict[str, object]) -> NetworkPolicy:
    return msgspec.convert({"metadata": {"name": name, "namespace": ns}, "spec": spec}, NetworkPolicy)


async def test_network_policies_let_only_the_frontend_reach_the_database(
    pod_plane: ControlPlane, pod_cluster: tuple[Client, Store, str]
) -> None:
    """Kubernetes' default-deny-ingress example, then a policy that lets only `role=frontend`
    reach the `role=db` pod: enforced by the database node's agent, in its kernel."""
    client, store, ns = pod_cluster
    here, there = pod_plane.agents[0].name, pod_plane.agents[1].name
    await client.create(web(ns, "db", 1, node=here, labels={"role": "db"}))
    await client.create(web(ns, "frontend", 1, node=there, labels={"role": "frontend"}))
    await client.create(web(ns, "other", 1, node=here, labels={"role": "other"}))
    (db,) = await serving_pods(client, store, ns, "db", 1)
    (frontend,) = await serving_pods(client, store, ns, "frontend", 1)
    (other,) = await serving_pods(client, store, ns, "other", 1)
    probe = (
        f"busybox timeout 3 busybox wget -q -O - http://{db.status.pod_ip}/ && echo reached || echo blocked"
    )

    async def reach(pod: Pod) -> str:
        return (await asyncio.to_thread(in_pod, pod_plane, pod, probe)).split()[-1]

    async def both(frontend_sees: str, other_sees: str) -> bool:
        return (await reach(frontend), await reach(other)) == (frontend_sees, other_sees)

    # No policy selects the database: all allowed.
    await eventually(lambda: both("reached", "reached"), within=60, every=0.5)
    await client.create(policy(ns, "default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]}))
    await eventually(lambda: both("blocked", "blocked"), within=60, every=0.5)
    frontend_only: dict[str, object] = {
        "podSelector": {"matchLabels": {"role": "db"}},
        "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}], "ports": [{"port": 80}]}
        ],
    }
    await client.create(policy(ns, "db-from-frontend", frontend_only))  # the union of both policies
    await eventually(lambda: both("reached", "blocked"), within=60, every=0.5)
    await client.delete(NetworkPolicy, "default-deny-ingress", ns)
    await client.delete(NetworkPolicy, "db-from-frontend", ns)
    await eventually(lambda: both("reached", "reached"), within=60, every=0.5)
