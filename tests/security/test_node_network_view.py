"""A node's NetworkPolicy enforcer under the node's own credential: it reads every pod as the
network sees it (bus/podview.py), from the API's `view: network` list and the `steer.feed.pods`
feed, and nothing more of pods bound to other nodes; with that it computes the rules that let a
frontend on another node reach a database on its own."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from nats.aio.msg import Msg

from bus import subjects
from bus.client import Client
from bus.connection import subscribe_checked
from bus.errors import BadRequest, Forbidden
from bus.informer import Informer
from bus.meta import LabelSelector, ObjectMeta
from bus.podview import NETWORK_VIEW
from bus.resources import Namespace, NetworkPolicy, Pod, Service
from bus.resources.networking import NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec
from bus.resources.pod import Container, ContainerPort, EnvVar, PodIP, PodSpec
from nodeagent.network.podfeed import PodAddresses
from nodeagent.network.policyenforcer import PolicyEnforcer
from tests.nodeagent.test_policyenforcer import FakeNft
from tests.securecluster import SecureCluster
from tests.security.test_denials import unique
from tests.waiting import eventually

SECRET = "s3cret-value"


def pod(name: str, node: str, labels: dict[str, str]) -> Pod:
    container = Container(
        name="main",
        image="registry.example/app:1",
        command=["sh", "-c", f"echo {SECRET}"],
        env=[EnvVar(name="PASSWORD", value=SECRET)],
        ports=[ContainerPort(name="db", container_port=5432)],
    )
    meta = ObjectMeta(name=name, namespace="mine", labels=labels, annotations={"note": SECRET})
    return Pod(metadata=meta, spec=PodSpec(containers=[container], node_name=node))


async def with_address(admin: Client, created: Pod, ip: str) -> Pod:
    created.status.phase = "Running"
    created.status.pod_ip, created.status.pod_ips = ip, [PodIP(ip=ip)]
    return await admin.update_status(created)


def assert_network_view_only(seen: Pod) -> None:
    text = msgspec.json.encode(seen).decode()
    assert SECRET not in text and "registry.example" not in text, text
    container = seen.spec.containers[0]
    assert not container.env and not container.command and not seen.metadata.annotations
    assert [(p.name, p.container_port) for p in container.ports] == [("db", 5432)]


async def test_a_node_lists_every_pod_as_the_network_sees_it_and_no_more(secure: SecureCluster) -> None:
    name = unique("elsewhere")
    async with secure.connect_as("admin") as (admin, _):
        stored = await with_address(
            admin, await admin.create(pod(name, "node-2", {"app": "x"})), "10.244.2.9"
        )
        with pytest.raises(BadRequest, match="view 'network' is not served for services"):
            await admin.list(Service, "*", view=NETWORK_VIEW)
        with pytest.raises(BadRequest, match="view 'everything'"):
            await admin.list(Pod, "*", view="everything")
    async with secure.connect_as("node-1", node="node-1") as (node, _):
        (seen,) = [p for p in await node.list(Pod, "*", view=NETWORK_VIEW) if p.metadata.name == name]
        assert seen.spec.node_name == "node-2" and seen.status.pod_ip == "10.244.2.9"
        assert seen.metadata.labels == {"app": "x"} and seen.metadata.uid == stored.metadata.uid
        assert_network_view_only(seen)
        assert name not in [p.metadata.name for p in await node.list(Pod, "*")]  # in full: its own only
        with pytest.raises(Forbidden, match="bound elsewhere"):
            await node.get(Pod, name, "mine")

        fed: asyncio.Queue[Msg] = asyncio.Queue()
        await subscribe_checked(node.nc, subjects.cluster_feed("pods"), cb=fed.put)
        async with secure.connect_as("admin") as (admin, _):
            current = await admin.get(Pod, name, "mine")
            current.metadata.labels["tier"] = "db"
            await admin.update(current)
        async with asyncio.timeout(10):
            while True:
                message = msgspec.json.decode((await fed.get()).data, type=Pod)
                if message.metadata.name == name:
                    break
        assert message.metadata.labels == {"app": "x", "tier": "db"}
        assert_network_view_only(message)


async def test_a_nodes_enforcer_under_its_credential_lets_a_frontend_on_another_node_in(
    secure: SecureCluster,
) -> None:
    """node-1's database pod admits only `role=frontend`; the frontend runs on node-2. The rules
    node-1 computes name the frontend's address, learnt from the feed, and drop it again once
    the frontend is deleted."""
    db, frontend, policy = unique("db"), unique("frontend"), unique("db-from-frontend")
    async with secure.connect_as("admin") as (admin, _):
        await with_address(admin, await admin.create(pod(db, "node-1", {"role": db})), "10.244.1.21")
        peer = NetworkPolicyPeer(pod_selector=LabelSelector(match_labels={"role": frontend}))
        spec = NetworkPolicySpec(
            pod_selector=LabelSelector(match_labels={"role": db}),
            ingress=[NetworkPolicyIngressRule(from_=[peer])],
        )
        await admin.create(NetworkPolicy(metadata=ObjectMeta(name=policy, namespace="mine"), spec=spec))
    async with secure.connect_as("node-1", node="node-1") as (node, store):
        pods = PodAddresses(node.nc, node, resync_interval=600)
        policies: Informer[NetworkPolicy] = Informer(store, NetworkPolicy)
        namespaces: Informer[Namespace] = Informer(store, Namespace)
        nft = FakeNft()
        enforcer = PolicyEnforcer(
            policies, pods, namespaces, node="node-1", pod_cidr="10.244.1.0/24", nft=nft, settle=0.01
        )
        async with asyncio.TaskGroup() as tasks:
            running = [tasks.create_task(task) for task in (pods.run(), policies.run(), namespaces.run())]
            running.append(tasks.create_task(enforcer.run()))

            async def applied(fragment: str, present: bool = True) -> bool:
                return bool(nft.scripts) and (fragment in nft.scripts[-1]) == present

            await eventually(lambda: applied("10.244.1.21"), within=20)  # the database is governed
            assert await applied("10.244.2.30", present=False)
            async with secure.connect_as("admin") as (admin, _):
                created = await admin.create(pod(frontend, "node-2", {"role": frontend}))
                await with_address(admin, created, "10.244.2.30")
                await eventually(lambda: applied("10.244.2.30"), within=20)  # by the feed alone
                await admin.delete(Pod, frontend, "mine", grace_period_seconds=0)  # no node-2 to wait for
                await eventually(lambda: applied("10.244.2.30", present=False), within=20)
            for task in running:
                task.cancel()
