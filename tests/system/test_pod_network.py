"""The pod network on a cluster of real processes, with Docker and with the process runtime.

Two node agents run with `--network pod` and a cluster CIDR of this module's own (no other
cluster on the machine uses it); the node IPAM controller gives each node a /24 of it. Each
replica of the test Deployment is busybox httpd on port 80 serving its own hostname, so three
of them on one node show that every pod has a network namespace and an address of its own,
and that its hostname is its name. All traffic goes to pod addresses, which live only in
namespaces the agents made.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from bus.client import Client
from bus.meta import ObjectMeta
from bus.resources import Deployment, Event, Node, Pod
from bus.resources.cluster import NodeSpec
from bus.store import Store
from nodeagent.network import links, names
from tests.agents import AgentProcess, node_ready
from tests.cluster import ControlPlane
from tests.system.podnet import cluster_cidr, fetch, node_cidr, serving_pods, web
from tests.system.test_workloads import steer
from tests.waiting import eventually, logged, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


async def test_replicas_on_one_node_each_have_an_address_a_hostname_and_port_80(
    pod_plane: ControlPlane, pod_cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = pod_cluster
    agent = pod_plane.agents[0]
    await client.create(web(ns, "web", 3, node=agent.name))
    pods = await serving_pods(client, store, ns, "web", 3)
    cidr = await node_cidr(client, agent.name)
    assert cidr.subnet_of(ipaddress.IPv4Network(cluster_cidr(pod_plane)))
    addresses = {p.status.pod_ip for p in pods}
    assert len(addresses) == 3
    for pod in pods:
        assert ipaddress.IPv4Address(pod.status.pod_ip) in cidr
        assert [ip.ip for ip in pod.status.pod_ips] == [pod.status.pod_ip]
        assert pod.status.host_ip == agent.address
        assert await asyncio.to_thread(fetch, pod.status.pod_ip) == pod.metadata.name
    node = await client.get(Node, agent.name, "")
    assert node.metadata.annotations["steersman.io/network"] == "pod"


async def test_a_pod_reaches_a_pod_on_another_node_by_its_address(
    pod_plane: ControlPlane, pod_cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = pod_cluster
    first, second = pod_plane.agents[0], pod_plane.agents[1]
    await client.create(web(ns, "one", 1, node=first.name))
    await client.create(web(ns, "two", 1, node=second.name))
    (client_pod,) = await serving_pods(client, store, ns, "one", 1)
    (server_pod,) = await serving_pods(client, store, ns, "two", 1)
    assert ipaddress.IPv4Address(server_pod.status.pod_ip) in await node_cidr(client, second.name)
    url = f"http://{server_pod.status.pod_ip}/"
    done = await asyncio.to_thread(
        steer,
        pod_plane,
        "exec",
        client_pod.metadata.name,
        "-n",
        ns,
        "--",
        "busybox",
        "wget",
        "-q",
        "-O",
        "-",
        url,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == server_pod.metadata.name


async def test_an_agent_killed_and_started_again_keeps_every_address(
    pod_plane: ControlPlane, pod_cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = pod_cluster
    agent = pod_plane.agents[0]
    await client.create(web(ns, "kept", 2, node=agent.name))
    before = {p.metadata.name: p.status.pod_ip for p in await serving_pods(client, store, ns, "kept", 2)}
    leases = sorted(os.listdir(agent.data_dir / "ipam"))
    agent.kill()
    agent.start()
    await restarted(agent)
    after = await serving_pods(client, store, ns, "kept", 2)
    assert {p.metadata.name: p.status.pod_ip for p in after} == before
    assert all(s.restart_count == 0 for p in after for s in p.status.container_statuses)
    for pod in after:
        assert await asyncio.to_thread(fetch, pod.status.pod_ip) == pod.metadata.name
    assert sorted(os.listdir(agent.data_dir / "ipam")) == leases


async def test_a_host_port_publishes_the_pod_on_its_node_address(
    pod_plane: ControlPlane, pod_cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = pod_cluster
    agent = pod_plane.agents[1]
    host_port = 18000 + pod_plane.subnet % 1000
    await client.create(web(ns, "published", 1, node=agent.name, host_port=host_port))
    (pod,) = await serving_pods(client, store, ns, "published", 1)
    assert await asyncio.to_thread(fetch, f"{agent.address}:{host_port}") == pod.metadata.name
    await client.delete(Deployment, "published", ns)

    async def withdrawn() -> bool:
        try:
            await asyncio.to_thread(fetch, f"{agent.address}:{host_port}")
        except OSError:
            return True
        return False

    await eventually(withdrawn, within=60)


async def test_a_host_network_pod_keeps_the_node_address_and_a_host_port(
    pod_plane: ControlPlane, pod_cluster: tuple[Client, Store, str]
) -> None:
    client, store, ns = pod_cluster
    agent = pod_plane.agents[0]
    await client.create(web(ns, "hostnet", 1, node=agent.name, host_network=True))
    (pod,) = await serving_pods(client, store, ns, "hostnet", 1)
    assert pod.status.pod_ip == pod.status.host_ip == agent.address
    (mapping,) = pod.status.host_ports
    assert mapping.container_port == 80 and mapping.host_port != 80  # $PORT: a host port of its own
    assert await asyncio.to_thread(fetch, f"{agent.address}:{mapping.host_port}")


async def restarted(agent: AgentProcess) -> None:
    """Until the agent started again has adopted its pods and says it is ready (a second time)."""
    await logged(agent.log, f"node agent {agent.name} ready", times=2)


async def test_what_a_killed_agent_left_half_made_is_removed_when_it_starts_again(
    pod_plane: ControlPlane, pod_cluster: tuple[Client, Store, str]
) -> None:
    """An agent killed between taking an address and plugging the pod in leaves an address file,
    a namespace and a veth of a pod that does not exist (any more): the next start removes them."""
    client, store, _ = pod_cluster
    agent = pod_plane.agents[1]
    cidr = await node_cidr(client, agent.name)
    agent.kill()
    ghost = "00000000-dead-4000-8000-000000000000"
    leftover = agent.data_dir / "ipam" / str(cidr.network_address + 200)
    leftover.write_text(f"{ghost}\n")
    await asyncio.to_thread(links.create_netns, names.netns(ghost))
    await asyncio.to_thread(
        links.plug_pod,
        bridge=names.bridge(agent.name),
        veth=names.veth(ghost),
        namespace=names.netns(ghost),
        address=str(cidr.network_address + 200),
        gateway=str(cidr.network_address + 1),
        routes=[],
    )
    agent.start()
    await restarted(agent)
    await until_gone(leftover, names.netns(ghost), names.veth(ghost))


async def until_gone(path: Path, netns: str, veth: str, *, within: float = 30.0) -> None:
    def present() -> bool:
        with IPRoute() as ipr:
            link = ipr.link_lookup(ifname=veth)
        return path.exists() or netns in links.netns_names() or bool(link)

    async def gone() -> bool:
        return not await asyncio.to_thread(present)

    await eventually(gone, within=within)


async def test_a_full_pod_cidr_keeps_the_next_pod_waiting_with_an_event(
    pod_plane: ControlPlane, pod_cluster: tuple[Client, Store, str]
) -> None:
    """A node whose pod CIDR holds one pod address: a second pod waits in ContainerCreating with
    FailedCreatePodSandBox, and runs once the first is gone."""
    client, store, ns = pod_cluster
    tiny = ipaddress.IPv4Network(cluster_cidr(pod_plane)).network_address + (255 << 8) + 252
    name = f"tiny-{pod_plane.subnet}"
    await client.create(Node(metadata=ObjectMeta(name=name), spec=NodeSpec(pod_cidr=f"{tiny}/30")))
    runtime = pod_plane.agents[0].args[pod_plane.agents[0].args.index("--runtime") + 1]
    cidr = cluster_cidr(pod_plane)
    agent = pod_plane.start_agent(
        runtime, "--network", "pod", "--cluster-cidr", cidr, "--lease", "4,1", name=name
    )
    await wait_for(store, Node, "", agent.name, node_ready)
    await client.create(web(ns, "first", 1, node=name))
    (first,) = await serving_pods(client, store, ns, "first", 1)
    assert first.status.pod_ip == str(tiny + 2)
    await client.create(web(ns, "second", 1, node=name))

    async def sandbox_failed() -> Event:
        while True:
            for event in await client.list(Event, ns):
                if event.reason == "FailedCreatePodSandBox" and event.involved_object.name.startswith(
                    "second-"
                ):
                    return event
            await asyncio.sleep(0.2)

    async with asyncio.timeout(60):
        event = await sandbox_failed()
    assert "no free address left" in event.message
    waiting = (await client.list(Pod, ns, label_selector="app=second"))[0]
    assert waiting.status.phase == "Pending" and not waiting.status.pod_ip
    await client.delete(Deployment, "first", ns)
    (second,) = await serving_pods(client, store, ns, "second", 1)
    assert second.status.pod_ip == str(tiny + 2)


def test_the_clean_up_removes_every_namespace_link_and_bridge(pod_plane: ControlPlane) -> None:
    """Last: what `steer down` runs for each node once its agent has stopped."""
    agents: list[AgentProcess] = list(pod_plane.agents)
    uids = [line.read_text().split()[0] for a in agents for line in (a.data_dir / "ipam").iterdir()]
    assert uids, "the tests above left pods running"
    pod_plane.stop_agents()  # stops them and runs their clean-up (tests/agents.py)
    made = {names.bridge(a.name) for a in agents} | {names.veth(uid) for uid in uids}
    with IPRoute() as ipr:
        left = {str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()} & made
    assert not left
    assert not {names.netns(uid) for uid in uids} & set(links.netns_names())
    assert not any((a.data_dir / "ipam").exists() for a in agents)
