"""The pod network across separate hosts (tests/hosts.py): node agents in namespaces of their own,
each with its own address on one bridge (one L2 segment), run with `--network pod` and the
process runtime. Each agent routes the pod CIDRs of the other nodes through their addresses
(nodeagent/network/noderoutes.py), so a pod on one host reaches a pod on another by its pod IP;
the routes go with their nodes, and a restarted agent keeps them (and corrects what it finds).

The pods are busybox httpd on port 80 serving their hostname (tests/system/test_pod_network.py),
Ready once they answer at their own address. All traffic goes to pod addresses, which live
only inside namespaces the agents made; everything lives inside the hosts' namespaces, which
the harness removes, after the pods have been deleted through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
from pyroute2 import IPRoute

from bus.client import Client
from bus.resources import Deployment, Node, Pod
from bus.store import Store
from nodeagent.network import links, names
from nodeagent.network.routetable import PROTO
from nodeagent.runtime.containerdir import SandboxRecord, scan
from nodeagent.runtime.procfs import read_stat
from tests.agents import node_ready
from tests.hosts import HostCluster, NodeAgent
from tests.netns import Host
from tests.system.test_pod_network import serving_pods, web
from tests.waiting import eventually, logged, wait_for, wait_for_all

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

REPO = Path(__file__).resolve().parents[2]
STATIC = 4  # `proto static`: a route an operator added by hand


def cluster_cidr(cluster: HostCluster) -> str:
    return f"10.{200 + cluster.net.subnet % 40}.0.0/16"


def pod_network(cluster: HostCluster) -> tuple[str, ...]:
    return ("--network", "pod", "--cluster-cidr", cluster_cidr(cluster), "--lease", "4,1")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostCluster]:
    with HostCluster.running(tmp_path_factory.mktemp("noderoutes")) as cluster:
        cluster.start_scheduler()
        cluster.start_controllers("--cluster-cidr", cluster_cidr(cluster))
        for _ in range(2):
            cluster.start_agent(*pod_network(cluster))
        try:
            yield cluster
            asyncio.run(no_pods_left(cluster))
        finally:
            kill_leftovers(cluster)


async def no_pods_left(cluster: HostCluster) -> None:
    """Delete the test's Deployments through the API and wait until their pods are gone and the
    agents have taken the pods' networks down (namespaces in /run/netns, veths)."""
    async with cluster.connect() as (client, store):
        uids = {p.metadata.uid for p in await client.list(Pod, "*")}
        for deployment in await client.list(Deployment, "*"):
            await client.delete(Deployment, deployment.metadata.name, deployment.metadata.namespace)
        await wait_for_all(store, Pod, "*", lambda pods: not pods, within=60)

    async def unplugged() -> bool:
        left = set(await asyncio.to_thread(links.netns_names))
        return not {names.netns(uid) for uid in uids} & left

    await eventually(unplugged, within=30)


@pytest.fixture
async def connected(cluster: HostCluster) -> AsyncIterator[tuple[Client, Store, str]]:
    async with cluster.connect() as (client, store):
        for agent in cluster.agents:
            if agent.proc.poll() is None:
                await wait_for(store, Node, "", agent.name, node_ready)
        yield client, store, await cluster.namespace(client)


def routes(host: Host) -> dict[str, tuple[str, int]]:
    """The host's routes through a gateway: destination -> (gateway, protocol)."""
    with IPRoute(netns=host.netns) as ipr:
        return {
            f"{r.get_attr('RTA_DST')}/{r['dst_len']}": (r.get_attr("RTA_GATEWAY"), r["proto"])
            for r in ipr.get_routes(family=2, table=254)
            if r.get_attr("RTA_GATEWAY") and r.get_attr("RTA_DST")
        }


def add_route(host: Host, dst: str, gateway: str, proto: int) -> None:
    with IPRoute(netns=host.netns) as ipr:
        ipr.route("add", dst=dst, gateway=gateway, proto=proto)


async def routed(host: Host, dst: str, gateway: str, *, within: float = 30.0) -> None:
    async def there() -> bool:
        return (await asyncio.to_thread(routes, host)).get(dst) == (gateway, PROTO)

    await eventually(there, within=within)


async def unrouted(host: Host, dst: str, *, within: float = 30.0) -> None:
    async def gone() -> bool:
        return dst not in await asyncio.to_thread(routes, host)

    await eventually(gone, within=within)


async def pod_cidr(client: Client, node: str) -> str:
    found = await client.get(Node, node, "")
    assert found.spec.pod_cidr
    return found.spec.pod_cidr


def steer(cluster: HostCluster, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "STEER_NATS": cluster.nats},
        timeout=60,
        cwd=REPO,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


async def fetched_from(cluster: HostCluster, client_pod: Pod, address: str) -> str:
    """What `busybox wget http://<address>/` prints, run in `client_pod` (steer exec)."""
    argv = ["exec", client_pod.metadata.name, "-n", client_pod.metadata.namespace, "--"]
    argv += ["busybox", "wget", "-q", "-O", "-", f"http://{address}/"]
    done = await asyncio.to_thread(steer, cluster, *argv)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def mount_holder(cluster: HostCluster, agent: NodeAgent) -> subprocess.Popen[bytes]:
    """A process in the running agent's mount and network namespaces, keeping them for its
    successor. On a real host the agent runs in the host's mount namespace, where the pods'
    network namespaces are mounted (/run/netns); here `ip netns exec` gave it one of its own,
    which would die with it."""
    argv = ["nsenter", f"--target={agent.proc.pid}", "--mount", "--net", "sleep", "600"]
    holder = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    cluster.procs.append(holder)  # inside the host's namespace: the harness ends it at the latest
    return holder


async def inside(pid: int, other: int) -> bool:
    """Whether process `pid` is in the mount namespace of process `other` yet."""
    with contextlib.suppress(OSError):
        return os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink(f"/proc/{other}/ns/mnt")
    return False


def start_again(cluster: HostCluster, agent: NodeAgent, holder: subprocess.Popen[bytes]) -> None:
    """Start the (stopped) agent again, as it was started, in the namespaces `holder` kept."""
    argv = agent.proc.args[agent.proc.args.index(agent.host.netns) + 1 :]
    enter = ["nsenter", f"--target={holder.pid}", "--mount", "--net"]
    with open(agent.log, "ab") as out:
        agent.proc = subprocess.Popen(
            [*enter, *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO), "STEER_LOG_LEVEL": "INFO"},
            cwd=REPO,
        )
    cluster.procs.append(agent.proc)


def pod_pids(agent: NodeAgent) -> list[int]:
    """The live processes of the agent's pods (the process runtime's state files say which)."""
    found = []
    for _, state in scan(agent.data_dir) if agent.data_dir.is_dir() else []:
        stat = read_stat(state.pid)
        if stat is not None and stat.start_ticks == state.start_ticks:
            found.append(state.pid)
    return found


def kill_leftovers(cluster: HostCluster) -> None:
    """Whatever a failed test left outside the hosts' namespaces, which the harness removes: the
    pods' processes (they run in namespaces of their own) and their names in /run/netns."""
    for agent in cluster.agents:
        for pid in pod_pids(agent):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for sandbox in agent.data_dir.glob("*/sandbox.json") if agent.data_dir.is_dir() else []:
            with contextlib.suppress(OSError):
                links.remove_netns(msgspec.json.decode(sandbox.read_bytes(), type=SandboxRecord).netns)


async def ready_again(agent: NodeAgent) -> None:
    """Until the agent started again says it is ready a second time (it has adopted its pods)."""
    await logged(agent.log, f"node agent {agent.name} ready", times=2)


async def test_a_pod_reaches_a_pod_on_another_host_through_the_node_routes(
    cluster: HostCluster, connected: tuple[Client, Store, str]
) -> None:
    client, store, ns = connected
    first, second = cluster.agents[0], cluster.agents[1]
    cidrs = {a.name: await pod_cidr(client, a.name) for a in (first, second)}
    # Each host routes the other's pod CIDR through the other's address.
    await routed(first.host, cidrs[second.name], second.host.address)
    await routed(second.host, cidrs[first.name], first.host.address)

    await client.create(web(ns, "one", 1, node=first.name))
    await client.create(web(ns, "two", 1, node=second.name))
    (one,) = await serving_pods(client, store, ns, "one", 1)
    (two,) = await serving_pods(client, store, ns, "two", 1)
    assert ipaddress.IPv4Address(two.status.pod_ip) in ipaddress.IPv4Network(cidrs[second.name])
    assert await fetched_from(cluster, one, two.status.pod_ip) == two.metadata.name
    assert await fetched_from(cluster, two, one.status.pod_ip) == one.metadata.name


async def test_a_restarted_agent_keeps_its_routes_and_corrects_what_it_finds(
    cluster: HostCluster, connected: tuple[Client, Store, str]
) -> None:
    client, store, ns = connected
    first, second = cluster.agents[0], cluster.agents[1]
    other = await pod_cidr(client, second.name)
    await routed(first.host, other, second.host.address)
    await client.create(web(ns, "far", 1, node=second.name))
    await client.create(web(ns, "near", 1, node=first.name))
    (far,) = await serving_pods(client, store, ns, "far", 1)
    (near,) = await serving_pods(client, store, ns, "near", 1)

    holder = await asyncio.to_thread(mount_holder, cluster, first)
    await eventually(lambda: inside(holder.pid, first.proc.pid))
    first.proc.kill()
    await asyncio.to_thread(first.proc.wait)
    # Routes outlive the agent that made them: the pods still reach each other meanwhile.
    assert (await asyncio.to_thread(routes, first.host))[other] == (second.host.address, PROTO)
    assert await fetched_from(cluster, far, near.status.pod_ip) == near.metadata.name
    # While it is away: a route of ours to a node that is no more, and one of someone else's.
    base = ipaddress.IPv4Network(cluster_cidr(cluster)).network_address
    stale, foreign = f"{base + (250 << 8)}/24", f"{base + (251 << 8)}/24"
    await asyncio.to_thread(add_route, first.host, stale, second.host.address, PROTO)
    await asyncio.to_thread(add_route, first.host, foreign, second.host.address, STATIC)

    start_again(cluster, first, holder)
    await ready_again(first)
    holder.kill()
    await asyncio.to_thread(holder.wait)
    await unrouted(first.host, stale)
    now = await asyncio.to_thread(routes, first.host)
    assert now[other] == (second.host.address, PROTO)
    assert now[foreign] == (second.host.address, STATIC)
    assert await fetched_from(cluster, near, far.status.pod_ip) == far.metadata.name
    assert await fetched_from(cluster, far, near.status.pod_ip) == near.metadata.name


async def test_a_deleted_node_takes_its_routes_with_it(
    cluster: HostCluster, connected: tuple[Client, Store, str]
) -> None:
    client, store, _ = connected
    third = await asyncio.to_thread(cluster.start_agent, *pod_network(cluster))
    found = await wait_for(store, Node, "", third.name, lambda n: node_ready(n) and bool(n.spec.pod_cidr))
    cidr = found.spec.pod_cidr
    for agent in cluster.agents[:2]:
        await routed(agent.host, cidr, third.host.address)
    assert cidr not in await asyncio.to_thread(routes, third.host)  # its own: the bridge's

    third.proc.terminate()  # it would register its Node again
    third.proc.wait(30)
    await client.delete(Node, third.name, "")
    for agent in cluster.agents[:2]:
        await unrouted(agent.host, cidr)
