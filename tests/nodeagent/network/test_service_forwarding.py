"""Service forwarding in a real kernel: a node's pod network in namespaces of the test's own, the
node's table written by `NftServiceProxy`, and connections from pods and from the node."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from bus.resources import Endpoints, Service
from nodeagent.network.nft import Nft, NftError
from nodeagent.network.serviceproxy import NftServiceProxy
from nodeagent.network.servicerules import SERVICE_PREFIX, chain_name
from nodeagent.proxy.feed import ServiceCache
from tests.nodeagent.network.objects import endpoints, service
from tests.nodeagent.network.podnet import PodNet

NODE_ADDRESS = "192.0.2.11"  # the node's own address, on the node namespace's lo
BACKENDS = {"b1": "10.244.0.11", "b2": "10.244.0.12", "b3": "10.244.0.13"}
CLIENT = "10.244.0.20"
WEB_IP = "10.96.0.10"


def _kernel_problem() -> str:
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    missing = [tool for tool in ("nft", "ip", "nsenter") if shutil.which(tool) is None]
    return f"missing {', '.join(missing)}" if missing else ""


@pytest.fixture
def net() -> Iterator[PodNet]:
    problem = _kernel_problem()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(problem)
    with PodNet.created() as podnet:
        for name, ip in BACKENDS.items():
            podnet.serve(podnet.add_pod(name, ip), 8080)
        podnet.add_pod("client", CLIENT)
        podnet.add_node_address(NODE_ADDRESS)
        yield podnet


class Recording(Nft):
    """The nft runner, keeping every script it ran."""

    def __init__(self, netns: str) -> None:
        super().__init__(netns=netns)
        object.__setattr__(self, "scripts", [])

    async def run(self, script: str) -> None:
        self.scripts.append(script)  # type: ignore[attr-defined]
        await super().run(script)


class Cluster:
    """What the feed would hold: Services and Endpoints, each change a newer version."""

    def __init__(self) -> None:
        self.cache = ServiceCache()
        self.cache.listed.set()
        self.rv = 0

    def put(self, obj: Service | Endpoints) -> None:
        self.rv += 1
        obj.metadata.resource_version = str(self.rv)
        mirror: Any = self.cache.services if isinstance(obj, Service) else self.cache.endpoints
        assert mirror.put(obj)
        self.cache.changed()

    def backends(self, name: str, pods: list[str], **kwargs: Any) -> None:
        self.put(endpoints(name, [BACKENDS[p] for p in pods], **kwargs))


def make_proxy(
    net: PodNet, cluster: Cluster, *, address: str = NODE_ADDRESS, **kwargs: Any
) -> NftServiceProxy:
    nft = Recording(net.node_netns_path)
    return NftServiceProxy(f"node-{net.tag}-{address}", address, cluster.cache, nft, **kwargs)


def web_cluster(*, affinity: int | None = None) -> Cluster:
    cluster = Cluster()
    cluster.put(service("web", WEB_IP, affinity=affinity))
    cluster.backends("web", list(BACKENDS))
    return cluster


def from_pod(net: PodNet, name: str) -> list[str]:
    return net.pods[name].command([])


async def test_a_clusterip_spreads_connections_evenly_over_every_backend(net: PodNet) -> None:
    """In turn (the default): 300 new connections, 100 to each backend."""
    proxy = make_proxy(net, web_cluster())
    assert await proxy.sync(full=True)
    seen, seconds = net.dial(from_pod(net, "client"), WEB_IP, 80, count=300)
    print(f"\n300 connections to the ClusterIP in {seconds:.2f}s: {dict(sorted(seen.items()))}")
    assert set(seen) == set(BACKENDS) and sum(seen.values()) == 300
    assert max(seen.values()) / min(seen.values()) <= 1.2
    # at random (kube-proxy's choice): every backend, and roughly evenly over more connections
    await make_proxy(net, web_cluster(), balancing="random").sync(full=True)
    seen, _ = net.dial(from_pod(net, "client"), WEB_IP, 80, count=1500)
    print(f"1500 connections, at random: {dict(sorted(seen.items()))}")
    assert set(seen) == set(BACKENDS) and max(seen.values()) / min(seen.values()) <= 1.3
    # the node itself reaches the ClusterIP too (the output hook)
    seen, _ = net.dial(net.in_node(), WEB_IP, 80, count=30)
    assert set(seen) <= set(BACKENDS) and sum(seen.values()) == 30


async def test_a_backend_removed_from_the_endpoints_gets_no_new_connection_after_the_next_sync(
    net: PodNet,
) -> None:
    cluster = web_cluster()
    proxy = make_proxy(net, cluster)
    assert await proxy.sync(full=True)
    cluster.backends("web", ["b1", "b2"])
    assert await proxy.sync()
    seen, _ = net.dial(from_pod(net, "client"), WEB_IP, 80, count=150)
    print(f"\nafter removing b3: {dict(sorted(seen.items()))}")
    assert set(seen) == {"b1", "b2"}


async def test_nodeports_and_load_balancer_ports_open_on_the_nodes_address_only(net: PodNet) -> None:
    cluster = Cluster()
    cluster.put(
        service("np", "10.96.0.11", {"name": "http", "port": 80, "nodePort": 30080}, type_="NodePort")
    )
    cluster.backends("np", list(BACKENDS))
    cluster.put(service("lb", "10.96.0.12", {"name": "http", "port": 8081}, type_="LoadBalancer"))
    cluster.backends("lb", ["b2"])
    proxy = make_proxy(net, cluster)
    assert await proxy.sync(full=True)
    await asyncio.to_thread(net.route_in_pod, net.pods["client"], f"{NODE_ADDRESS}/32")
    for where in (net.in_node(), from_pod(net, "client")):
        seen, _ = net.dial(where, NODE_ADDRESS, 30080, count=30)
        assert set(seen) <= set(BACKENDS) and sum(seen.values()) == 30, seen
        seen, _ = net.dial(where, NODE_ADDRESS, 8081, count=5)
        assert seen == {"b2": 5}
    seen, _ = net.dial(from_pod(net, "client"), "10.244.0.1", 30080)  # the gateway is not the node address
    assert seen == {"refused": 1}


async def test_a_nodeport_dialled_on_a_loopback_node_address_reaches_a_pod(net: PodNet) -> None:
    cluster = Cluster()
    cluster.put(
        service("np", "10.96.0.11", {"name": "http", "port": 80, "nodePort": 30080}, type_="NodePort")
    )
    cluster.backends("np", ["b1"])
    proxy = make_proxy(net, cluster, address="127.0.0.11")
    assert await proxy.sync(full=True)
    seen, _ = net.dial(net.in_node(), "127.0.0.11", 30080, count=5)
    assert seen == {"b1": 5}


async def test_a_pod_reaches_itself_through_its_service(net: PodNet) -> None:
    """Hairpin: the DNATed packet goes back out the bridge port it came in by (hairpin mode on
    the pod's port) and is masqueraded, so the reply comes back through the node."""
    cluster = Cluster()
    cluster.put(service("solo", "10.96.0.13"))
    cluster.backends("solo", ["b1"])
    proxy = make_proxy(net, cluster)
    assert await proxy.sync(full=True)
    seen, _ = net.dial(from_pod(net, "b1"), "10.96.0.13", 80, count=5, timeout=1.0)
    assert seen == {"b1": 5}


async def test_a_service_without_endpoints_refuses_at_once(net: PodNet) -> None:
    cluster = Cluster()
    cluster.put(service("empty", "10.96.0.14"))
    proxy = make_proxy(net, cluster)
    assert await proxy.sync(full=True)
    for where in (from_pod(net, "client"), net.in_node()):
        seen, seconds = net.dial(where, "10.96.0.14", 80, timeout=3.0)
        print(f"\nno endpoints: {dict(seen)} in {seconds * 1000:.1f} ms")
        assert seen == {"refused": 1} and seconds < 1.0


async def test_a_clusterip_refuses_a_port_that_no_service_serves(net: PodNet) -> None:
    """Nothing DNATs it, and the node would send it out by its default route (here a veth in
    the node's namespace whose peer is down, so it goes nowhere): the table rejects it
    instead, from the node and from its pods alike."""
    await asyncio.to_thread(net.add_default_route_to_nowhere)
    proxy = make_proxy(net, web_cluster())
    assert await proxy.sync(full=True)
    for where in (from_pod(net, "client"), net.in_node()):
        seen, seconds = net.dial(where, WEB_IP, 81, timeout=3.0)
        assert seen == {"refused": 1} and seconds < 1.0, (seen, seconds)
        seen, _ = net.dial(where, WEB_IP, 80, count=3)
        assert set(seen) <= set(BACKENDS) and sum(seen.values()) == 3, seen


async def test_client_ip_affinity_sends_a_client_to_one_backend(net: PodNet) -> None:
    proxy = make_proxy(net, web_cluster(affinity=60))
    assert await proxy.sync(full=True)
    seen, _ = net.dial(from_pod(net, "client"), WEB_IP, 80, count=60)
    print(f"\nClientIP affinity: {dict(seen)}")
    assert len(seen) == 1 and sum(seen.values()) == 60 and set(seen) <= set(BACKENDS)


def rules_by_chain(listing: list[dict[str, Any]]) -> dict[str, list[tuple[int, str]]]:
    chains: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
    for item in listing:
        if "rule" in item:
            rule = item["rule"]
            chains[rule["chain"]].append((rule["handle"], json.dumps(rule["expr"], sort_keys=True)))
    return chains


async def test_a_partial_sync_rewrites_the_changed_service_only(net: PodNet) -> None:
    cluster = web_cluster()
    cluster.put(service("other", "10.96.0.15"))
    cluster.backends("other", ["b1", "b2"])
    proxy = make_proxy(net, cluster)
    nft = proxy.nft
    assert await proxy.sync(full=True)
    before = rules_by_chain(await nft.list_table(proxy.table))
    cluster.backends("other", ["b1"])
    runs = len(nft.scripts)  # type: ignore[attr-defined]
    assert await proxy.sync()
    after = rules_by_chain(await nft.list_table(proxy.table))
    scripts = nft.scripts[runs:]  # type: ignore[attr-defined]
    assert len(scripts) == 1  # one transaction
    web_chains = [c for c in before if "default/web/" in c]
    assert len(web_chains) == 4  # the service chain and three endpoint chains
    for chain in web_chains:
        assert after[chain] == before[chain]  # same rules, same handles: untouched
        assert chain not in scripts[0]
    other = chain_name(SERVICE_PREFIX, "default/other/tcp/http")
    assert after[other] != before[other]
    for fixed in ("services", "nat-prerouting", "masquerading"):
        assert after[fixed] == before[fixed]
    seen, _ = net.dial(from_pod(net, "client"), "10.96.0.15", 80, count=10)
    assert seen == {"b1": 10}
    seen, _ = net.dial(from_pod(net, "client"), WEB_IP, 80, count=30)
    assert sum(seen.values()) == 30 and set(seen) <= set(BACKENDS)


async def test_a_full_sync_repairs_the_table_and_stale_chains_are_deleted_later(net: PodNet) -> None:
    cluster = web_cluster()
    cluster.put(service("gone", "10.96.0.16"))
    cluster.backends("gone", ["b1"])
    proxy = make_proxy(net, cluster)
    assert await proxy.sync(full=True)
    await proxy.nft.run(f"flush map {proxy.table} service-ips\n")  # someone else meddled
    assert cluster.cache.services.delete(cluster.cache.services.objects[("default", "gone")])
    assert await proxy.sync(full=True)
    seen, _ = net.dial(from_pod(net, "client"), WEB_IP, 80, count=10)
    assert sum(seen.values()) == 10 and set(seen) <= set(BACKENDS)
    gone = [c for c in rules_by_chain(await proxy.nft.list_table(proxy.table)) if "default/gone/" in c]
    assert not gone  # flushed (an empty chain has no rules)
    assert len(proxy.stale) == 2
    await proxy.delete_stale(now=asyncio.get_running_loop().time() + proxy.stale_after)
    chains = {item["chain"]["name"] for item in await proxy.nft.list_table(proxy.table) if "chain" in item}
    assert not proxy.stale and not [c for c in chains if "default/gone/" in c]


async def test_cleanup_removes_the_table(net: PodNet) -> None:
    proxy = make_proxy(net, web_cluster())
    assert await proxy.sync(full=True)
    assert await proxy.nft.list_table(proxy.table)
    await proxy.cleanup()
    assert await proxy.nft.list_table(proxy.table) == []
    await proxy.cleanup()  # gone already: nothing to do


async def test_running_it_brings_an_endpoint_change_to_the_kernel_within_a_second(net: PodNet) -> None:
    cluster = web_cluster()
    proxy = make_proxy(net, cluster)
    b3 = f"{BACKENDS['b3']}/8080"

    async def kernel_has_b3() -> bool:
        listing = await proxy.nft.list_table(proxy.table)
        service_chain = chain_name(SERVICE_PREFIX, "default/web/tcp/http")
        return any(b3 in text for _, text in rules_by_chain(listing).get(service_chain, []))

    async def wait_for(want: bool) -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(5):
            while await kernel_has_b3() != want:  # noqa: ASYNC110 - the kernel has no event to wait on
                await asyncio.sleep(0.005)
        return loop.time() - started

    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(proxy.run())
        await wait_for(True)
        cluster.backends("web", ["b1", "b2"])
        latency = await wait_for(False)
        print(f"\nan endpoint change reached the kernel in {latency * 1000:.0f} ms")
        assert latency < 1.0
        seen, _ = await asyncio.to_thread(net.dial, from_pod(net, "client"), WEB_IP, 80, count=30)
        assert set(seen) <= {"b1", "b2"} and sum(seen.values()) == 30
        task.cancel()


async def test_a_failing_nft_is_retried_with_a_full_sync(net: PodNet) -> None:
    class Failing(Recording):
        failures = 2

        async def run(self, script: str) -> None:
            if Failing.failures:
                Failing.failures -= 1
                raise NftError("Error: Could not process rule: Device or resource busy")
            await super().run(script)

    cluster = web_cluster()
    proxy = NftServiceProxy(
        f"node-{net.tag}", NODE_ADDRESS, cluster.cache, Failing(net.node_netns_path), retry_first=0.01
    )
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(proxy.run())
        async with asyncio.timeout(5):
            while not await proxy.nft.list_table(proxy.table):  # noqa: ASYNC110 - the kernel's state
                await asyncio.sleep(0.005)
        task.cancel()
    assert Failing.failures == 0
    assert proxy.nft.scripts[0].startswith(f"add table {proxy.table}")  # type: ignore[attr-defined]
    seen, _ = net.dial(from_pod(net, "client"), WEB_IP, 80, count=10)
    assert sum(seen.values()) == 10 and set(seen) <= set(BACKENDS)
