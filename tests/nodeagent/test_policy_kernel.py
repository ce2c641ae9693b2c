"""NetworkPolicy rules in a real kernel: a node namespace with its bridge, pods in namespaces of
their own (tests/nodeagent/podnet.py), the rules applied in the node's namespace with `nft -f -`.

Every blocked attempt is a connect (or a DNS query) that gets no answer within its timeout;
each test first shows the same attempt succeeding, so a block is the rules' doing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import yaml

from bus.meta import ObjectMeta
from bus.resources import Namespace, NetworkPolicy, Pod
from bus.resources.pod import Container, ContainerPort, PodSpec, PodStatus
from bus.validation import decode_object
from nodeagent.network import policyrules
from nodeagent.network.nft import Nft
from nodeagent.network.policyenforcer import PolicyEnforcer
from tests.nodeagent.podnet import GATEWAY, POD_CIDR, PodNetwork, pod_network
from tests.nodeagent.test_policyrules import CASES
from tests.nodeagent.test_policyrules import NAMESPACES as CASE_NAMESPACES
from tests.nodeagent.test_policyrules import PODS as CASE_PODS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and nftables")

NODE = "n1"
TABLE = policyrules.table_name(NODE)

# From the Kubernetes documentation, unchanged.
DEFAULT_DENY_INGRESS = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
spec:
  podSelector: {}
  policyTypes:
  - Ingress
"""
DEFAULT_DENY_EGRESS = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-egress
spec:
  podSelector: {}
  policyTypes:
  - Egress
"""
ALLOW_DNS = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-dns
spec:
  podSelector: {}
  policyTypes:
  - Egress
  egress:
  - ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
"""
FRONTEND_TO_DB = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db-from-frontend
spec:
  podSelector:
    matchLabels:
      role: db
  ingress:
  - from:
    - podSelector:
        matchLabels:
          role: frontend
    ports:
    - protocol: TCP
      port: 6379
"""


def manifest(text: str, namespace: str = "app") -> NetworkPolicy:
    obj = decode_object(yaml.safe_load(text))
    assert isinstance(obj, NetworkPolicy)
    obj.metadata.namespace = namespace  # as `steer apply -n app` does
    return obj


REDIS = [ContainerPort(container_port=6379, name="redis")]


def pod_of(net: PodNetwork, name: str, *, ns: str = "app", **labels: str) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=ns, labels=labels),
        spec=PodSpec(
            node_name=NODE,
            containers=[Container(name="c", image="busybox:local", ports=REDIS)],
        ),
        status=PodStatus(phase="Running", pod_ip=net.pods[name].ip),
    )


NAMESPACES = [Namespace(metadata=ObjectMeta(name="app")), Namespace(metadata=ObjectMeta(name="other"))]


def enforce(net: PodNetwork, policies: Sequence[NetworkPolicy], pods: Sequence[Pod]) -> None:
    ruleset = policyrules.rules(policies, pods, NAMESPACES, node=NODE, pod_cidr=POD_CIDR)
    listing = asyncio.run(Nft(netns=f"/run/netns/{net.node.netns}").listing(TABLE))
    script = policyrules.script(ruleset, table=TABLE, previous=policyrules.owned(listing))
    asyncio.run(Nft(netns=f"/run/netns/{net.node.netns}").apply(script))


@pytest.fixture
def net() -> Iterator[PodNetwork]:
    with pod_network("client", "server", "outsider") as made:
        yield made


def test_default_deny_ingress_blocks_new_connections_and_lets_replies_in(net: PodNetwork) -> None:
    net.serve(net.pods["server"], 8080)
    net.serve(net.pods["outsider"], 8080)
    pods = [pod_of(net, "client"), pod_of(net, "server"), pod_of(net, "outsider", ns="other")]
    assert net.reach("client", "server", 8080) == "ok"

    enforce(net, [manifest(DEFAULT_DENY_INGRESS)], pods)
    assert net.reach("client", "server", 8080) == "timeout"
    assert net.reach("outsider", "server", 8080) == "timeout"
    # The client is governed for ingress too: the server's answers reach it as replies.
    assert net.reach("client", "outsider", 8080) == "ok"

    enforce(net, [], pods)  # the policy goes, and so do its chains
    assert net.reach("client", "server", 8080) == "ok"
    assert "netpol-in-" not in _listing(net)


def test_default_deny_egress_blocks_connections_and_dns_unless_allowed(net: PodNetwork) -> None:
    net.serve(net.pods["server"], 8080)
    net.serve(net.node, 53, "udp")  # the node's resolver, on the gateway: INPUT to the node
    pods = [pod_of(net, "client"), pod_of(net, "server", ns="other")]
    assert net.reach("client", "server", 8080) == "ok"
    assert net.reach("client", GATEWAY, 53, "udp") == "ok"

    enforce(net, [manifest(DEFAULT_DENY_EGRESS)], pods)
    assert net.reach("client", "server", 8080) == "timeout"
    assert net.reach("client", GATEWAY, 53, "udp") == "timeout"

    enforce(net, [manifest(DEFAULT_DENY_EGRESS), manifest(ALLOW_DNS)], pods)
    assert net.reach("client", GATEWAY, 53, "udp") == "ok"
    assert net.reach("client", "server", 8080) == "timeout"


def test_only_frontends_reach_the_db_port(net: PodNetwork) -> None:
    net.serve(net.pods["server"], 6379)
    net.serve(net.pods["server"], 7000)
    pods = [
        pod_of(net, "client", role="frontend"),
        pod_of(net, "server", role="db"),
        pod_of(net, "outsider", role="web"),
    ]
    enforce(net, [manifest(FRONTEND_TO_DB)], pods)
    assert net.reach("client", "server", 6379) == "ok"
    assert net.reach("outsider", "server", 6379) == "timeout"
    assert net.reach("client", "server", 7000) == "timeout"


class Static:
    """A source that holds what the test puts in it."""

    def __init__(self, items: list[Any]) -> None:
        self.synced = asyncio.Event()
        self.synced.set()
        self.objects = items
        self.handlers: list[Any] = []

    def items(self) -> list[Any]:
        return list(self.objects)

    def on_change(self, handler: Any) -> None:
        self.handlers.append(handler)

    def replace(self, items: list[Any]) -> None:
        self.objects = items
        for handler in self.handlers:
            handler("MODIFIED", None, None)


class Recording:
    """The node's nft runner, telling when it has applied a script."""

    def __init__(self, netns: str) -> None:
        self.nft = Nft(netns=f"/run/netns/{netns}")
        self.applied = asyncio.Event()

    async def apply(self, script: str) -> None:
        await self.nft.apply(script)
        self.applied.set()

    async def listing(self, table: str) -> str:
        return await self.nft.listing(table)


async def test_the_enforcer_follows_changes(net: PodNetwork) -> None:
    await asyncio.to_thread(net.serve, net.pods["server"], 8080)
    policies = Static([manifest(DEFAULT_DENY_INGRESS)])
    pods = Static([pod_of(net, "client"), pod_of(net, "server")])
    nft = Recording(net.node.netns)
    enforcer = PolicyEnforcer(policies, pods, Static(NAMESPACES), node=NODE, pod_cidr=POD_CIDR, nft=nft)
    async with asyncio.timeout(30), asyncio.TaskGroup() as tasks:
        running = tasks.create_task(enforcer.run())
        await nft.applied.wait()
        assert await asyncio.to_thread(net.reach, "client", "server", 8080) == "timeout"
        nft.applied.clear()
        policies.replace([])
        await nft.applied.wait()
        assert await asyncio.to_thread(net.reach, "client", "server", 8080) == "ok"
        running.cancel()


@pytest.fixture(scope="module")
def empty_namespace() -> Iterator[str]:
    with pod_network() as made:
        yield made.node.netns


@pytest.mark.parametrize(("case", "policies", "packet", "ok"), CASES, ids=[c[0] for c in CASES])
def test_nft_takes_every_table_case(
    empty_namespace: str, case: str, policies: list[NetworkPolicy], packet: Any, ok: bool
) -> None:
    ruleset = policyrules.rules(policies, CASE_PODS.values(), CASE_NAMESPACES, node=NODE, pod_cidr=POD_CIDR)
    script = policyrules.script(ruleset, table=TABLE)
    argv = ["ip", "netns", "exec", empty_namespace, "nft", "-c", "-f", "-"]
    checked = subprocess.run(argv, input=script, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def _listing(net: PodNetwork) -> str:
    return subprocess.run(
        net.node.command(["nft", "list", "table", "ip", TABLE]), capture_output=True, text=True, check=True
    ).stdout
