"""Garbage collection through ownerReferences against the real API: background, foreground and
orphan propagation, the API's side of it (finalizers), and `steer delete --cascade`. The collector
runs in the test's event loop; no scheduler, agent or other controller runs, so the objects only
change when the collector (or the test) changes them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from bus.client import Client
from bus.errors import NotFound
from bus.meta import LabelSelector, ObjectMeta, OwnerReference, Resource
from bus.protocol import FOREGROUND_FINALIZER, ORPHAN_FINALIZER
from bus.resources import Deployment, Pod, ReplicaSet
from bus.resources.apps import DeploymentSpec, ReplicaSetSpec
from bus.resources.pod import Container, PodSpec, PodTemplateSpec
from bus.store import Store
from services.controllers.garbagecollector import GarbageCollector, collected_informers, garbage_collector
from tests.cli.conftest import steer_command
from tests.cluster import ControlPlane
from tests.waiting import wait_for, wait_gone

WITHIN = 30.0
TEMPLATE = PodTemplateSpec(
    metadata=ObjectMeta(labels={"app": "web"}), spec=PodSpec(containers=[Container(name="c", image="i")])
)


@pytest.fixture
async def collector(client: Client, store: Store) -> AsyncIterator[None]:
    informers = collected_informers(store)
    control = garbage_collector(client, informers, workers=2)
    runs = [*(informer.run() for informer in informers.values()), control.run()]
    tasks = [asyncio.create_task(run) for run in runs]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def owned_by(*owners: Resource, block: bool = True) -> list[OwnerReference]:
    return [
        OwnerReference(
            api_version=owner.api_version,
            kind=owner.kind,
            name=owner.metadata.name,
            uid=owner.metadata.uid,
            controller=i == 0 or None,
            block_owner_deletion=block or None,
        )
        for i, owner in enumerate(owners)
    ]


async def deployment(client: Client, ns: str, name: str = "web") -> Deployment:
    spec = DeploymentSpec(selector=LabelSelector(match_labels={"app": "web"}), template=TEMPLATE)
    return await client.create(Deployment(metadata=ObjectMeta(name=name, namespace=ns), spec=spec))


async def replicaset(client: Client, ns: str, name: str = "web", *owners: Resource) -> ReplicaSet:
    meta = ObjectMeta(name=name, namespace=ns, owner_references=owned_by(*owners) if owners else [])
    spec = ReplicaSetSpec(selector=LabelSelector(match_labels={"app": "web"}), template=TEMPLATE)
    return await client.create(ReplicaSet(metadata=meta, spec=spec))


async def pod(client: Client, ns: str, name: str, *owners: Resource, node: str = "") -> Pod:
    meta = ObjectMeta(name=name, namespace=ns, owner_references=owned_by(*owners) if owners else [])
    spec = PodSpec(containers=[Container(name="c", image="i")], node_name=node)
    return await client.create(Pod(metadata=meta, spec=spec))


async def all_gone(store: Store, ns: str, *objects: Resource) -> None:
    for obj in objects:
        await wait_gone(store, type(obj), ns, obj.metadata.name, within=WITHIN)


# -- background


async def test_background_deletes_a_chain_of_dependents(
    client: Client, store: Store, ns: str, collector: Any
) -> None:
    owner = await deployment(client, ns)
    rs = await replicaset(client, ns, "web-1", owner)
    pods = [await pod(client, ns, f"web-1-{i}", rs) for i in range(3)]
    bystander = await pod(client, ns, "bystander")
    gone = await client.delete(Deployment, "web", ns)
    assert gone.metadata.deletion_timestamp is None  # background: the owner goes at once
    await all_gone(store, ns, rs, *pods)
    assert (await client.get(Pod, "bystander", ns)).metadata.uid == bystander.metadata.uid


async def test_a_dependent_with_two_owners_survives_losing_one(
    client: Client, store: Store, ns: str, collector: Any
) -> None:
    first, second = await replicaset(client, ns, "first"), await replicaset(client, ns, "second")
    await pod(client, ns, "shared", first, second)
    await client.delete(ReplicaSet, "first", ns)
    kept = await wait_for(store, Pod, ns, "shared", lambda p: len(p.metadata.owner_references) == 1)
    assert kept.metadata.owner_references[0].uid == second.metadata.uid
    assert kept.metadata.deletion_timestamp is None
    await client.delete(ReplicaSet, "second", ns)
    await wait_gone(store, Pod, ns, "shared", within=WITHIN)


async def test_a_dependent_whose_owner_never_existed_is_deleted(
    client: Client, store: Store, ns: str, collector: Any
) -> None:
    ghost = OwnerReference(api_version="apps/v1", kind="ReplicaSet", name="ghost", uid="no-such-uid")
    meta = ObjectMeta(name="stray", namespace=ns, owner_references=[ghost])
    await client.create(Pod(metadata=meta, spec=PodSpec(containers=[Container(name="c", image="i")])))
    await wait_gone(store, Pod, ns, "stray", within=WITHIN)


# -- foreground


async def test_foreground_keeps_the_owner_until_blocking_dependents_are_really_gone(
    client: Client, store: Store, ns: str, collector: Any
) -> None:
    owner = await deployment(client, ns)
    rs = await replicaset(client, ns, "web-1", owner)
    stopping = await pod(client, ns, "on-a-node", rs, node="node-that-never-answers")
    unbound = await pod(client, ns, "unbound", rs)
    marked = await client.delete(Deployment, "web", ns, propagation_policy="Foreground")
    assert marked.metadata.deletion_timestamp is not None
    assert marked.metadata.finalizers == [FOREGROUND_FINALIZER]
    # The ReplicaSet has dependents of its own: it is deleted in the foreground as well.
    await wait_for(store, ReplicaSet, ns, "web-1", lambda r: FOREGROUND_FINALIZER in r.metadata.finalizers)
    await wait_gone(store, Pod, ns, unbound.metadata.name, within=WITHIN)
    terminating = await wait_for(store, Pod, ns, stopping.metadata.name, _terminating)
    assert terminating.metadata.deletion_grace_period_seconds == 30  # an ordinary graceful deletion
    for kind, name in ((Deployment, "web"), (ReplicaSet, "web-1")):
        held = await client.get(kind, name, ns)
        assert held.metadata.deletion_timestamp is not None
        assert held.metadata.finalizers == [FOREGROUND_FINALIZER]
    await client.delete(Pod, stopping.metadata.name, ns, grace_period_seconds=0)  # as its agent would
    await all_gone(store, ns, rs, owner)


async def test_foreground_does_not_wait_for_dependents_that_do_not_block(
    client: Client, store: Store, ns: str, collector: Any
) -> None:
    rs = await replicaset(client, ns)
    meta = ObjectMeta(name="loose", namespace=ns, owner_references=owned_by(rs, block=False))
    spec = PodSpec(containers=[Container(name="c", image="i")], node_name="node-that-never-answers")
    await client.create(Pod(metadata=meta, spec=spec))
    await client.delete(ReplicaSet, "web", ns, propagation_policy="Foreground")
    await wait_gone(store, ReplicaSet, ns, "web", within=WITHIN)
    await wait_for(store, Pod, ns, "loose", _terminating)  # deleted as well, gracefully


def _terminating(obj: Resource) -> bool:
    return obj.metadata.deletion_timestamp is not None


# -- orphan


async def test_orphan_keeps_the_dependents_without_the_reference(
    client: Client, store: Store, ns: str, collector: Any
) -> None:
    owner = await deployment(client, ns)
    rs = await replicaset(client, ns, "web-1", owner)
    pods = [await pod(client, ns, f"web-1-{i}", rs) for i in range(2)]
    other = await replicaset(client, ns, "other")
    shared = await pod(client, ns, "shared", rs, other)
    marked = await client.delete(ReplicaSet, "web-1", ns, propagation_policy="Orphan")
    assert marked.metadata.finalizers == [ORPHAN_FINALIZER]
    await wait_gone(store, ReplicaSet, ns, "web-1", within=WITHIN)
    for kept in pods:
        assert (await client.get(Pod, kept.metadata.name, ns)).metadata.owner_references == []
    refs = (await client.get(Pod, shared.metadata.name, ns)).metadata.owner_references
    assert [ref.uid for ref in refs] == [other.metadata.uid]
    assert (await client.get(Deployment, "web", ns)).metadata.deletion_timestamp is None  # owners untouched


# -- caches behind the API: decisions that destroy are checked live


def with_cache(client: Client, store: Store, *cached: Resource) -> GarbageCollector:
    """A collector whose caches hold exactly `cached` (its informers never run)."""
    informers = collected_informers(store)
    for obj in cached:
        informers[obj.kind].put(obj)
    return GarbageCollector(client, informers)


async def test_a_stale_cache_never_deletes_a_dependent_orphaned_meanwhile(
    client: Client, store: Store, ns: str
) -> None:
    rs = await replicaset(client, ns)
    stale = await pod(client, ns, "p", rs)
    await client.delete(ReplicaSet, "web", ns)
    await client.patch(Pod, "p", {"metadata": {"ownerReferences": None}}, ns)
    await with_cache(client, store, stale).reconcile(f"Pod/{ns}/p")
    assert (await client.get(Pod, "p", ns)).metadata.deletion_timestamp is None


async def test_orphaning_finds_dependents_the_cache_has_not_seen(
    client: Client, store: Store, ns: str
) -> None:
    rs = await replicaset(client, ns)
    await pod(client, ns, "p", rs)
    marked = await client.delete(ReplicaSet, "web", ns, propagation_policy="Orphan")
    await with_cache(client, store, marked).reconcile(f"ReplicaSet/{ns}/web")
    assert (await client.get(Pod, "p", ns)).metadata.owner_references == []
    with pytest.raises(NotFound):
        await client.get(ReplicaSet, "web", ns)


async def test_foreground_waits_for_dependents_the_cache_has_not_seen(
    client: Client, store: Store, ns: str
) -> None:
    rs = await replicaset(client, ns)
    await pod(client, ns, "p", rs)
    marked = await client.delete(ReplicaSet, "web", ns, propagation_policy="Foreground")
    await with_cache(client, store, marked).reconcile(f"ReplicaSet/{ns}/web")
    assert (await client.get(ReplicaSet, "web", ns)).metadata.finalizers == [FOREGROUND_FINALIZER]


# -- the API's side (no collector: the finalizers stay until someone removes them)


async def test_the_api_marks_foreground_and_orphan_deletes_with_finalizers(client: Client, ns: str) -> None:
    await replicaset(client, ns)
    marked = await client.delete(ReplicaSet, "web", ns, propagation_policy="Foreground")
    assert marked.metadata.deletion_timestamp is not None
    assert marked.metadata.finalizers == [FOREGROUND_FINALIZER]
    again = await client.delete(ReplicaSet, "web", ns)  # no policy named: nothing changes
    assert again.metadata.resource_version == marked.metadata.resource_version
    switched = await client.delete(ReplicaSet, "web", ns, propagation_policy="Orphan")
    assert switched.metadata.finalizers == [ORPHAN_FINALIZER]
    assert switched.metadata.deletion_timestamp == marked.metadata.deletion_timestamp
    await client.patch(ReplicaSet, "web", {"metadata": {"finalizers": None}}, ns)
    with pytest.raises(NotFound):
        await client.get(ReplicaSet, "web", ns)


async def test_a_pod_on_a_node_waits_for_its_agent_even_without_finalizers(client: Client, ns: str) -> None:
    await pod(client, ns, "p", node="node-that-never-answers")
    marked = await client.delete(Pod, "p", ns, propagation_policy="Orphan")
    assert marked.metadata.finalizers == [ORPHAN_FINALIZER]
    assert marked.metadata.deletion_grace_period_seconds == 30
    await client.patch(Pod, "p", {"metadata": {"finalizers": None}}, ns)
    assert (await client.get(Pod, "p", ns)).metadata.deletion_timestamp is not None  # still stopping
    await client.delete(Pod, "p", ns, grace_period_seconds=0)  # the agent's final delete
    with pytest.raises(NotFound):
        await client.get(Pod, "p", ns)


async def test_the_agents_final_delete_waits_for_the_last_finalizer(client: Client, ns: str) -> None:
    await pod(client, ns, "p", node="node-that-never-answers")
    await client.delete(Pod, "p", ns, propagation_policy="Foreground")
    stopped = await client.delete(Pod, "p", ns, grace_period_seconds=0)
    assert stopped.metadata.deletion_grace_period_seconds == 0
    assert stopped.metadata.finalizers == [FOREGROUND_FINALIZER]
    await client.patch(Pod, "p", {"metadata": {"finalizers": None}}, ns)
    with pytest.raises(NotFound):
        await client.get(Pod, "p", ns)


# -- steer delete --cascade


async def steer(nats_url: str, *args: str) -> tuple[int, str, str]:
    """`steer` as a subprocess, without blocking the event loop the collector runs in."""
    env = {**os.environ, "STEER_NATS": nats_url}
    env.pop("STEER_NAMESPACE", None)
    proc = await asyncio.create_subprocess_exec(
        *steer_command(), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert b"Traceback" not in err, err.decode()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_steer_delete_cascade(
    client: Client, store: Store, ns: str, nats_url: str, collector: Any
) -> None:
    code, out, err = await steer(nats_url, "delete", "rs", "web", "-n", ns, "--cascade=sideways")
    assert code == 1 and out == ""
    assert err.strip() == 'error: invalid --cascade "sideways": use background, foreground or orphan'

    rs = await replicaset(client, ns)
    held = await pod(client, ns, "web-0", rs)
    code, out, err = await steer(nats_url, "delete", "rs", "web", "-n", ns, "--cascade=foreground")
    assert code == 0, err
    assert out.strip() == 'replicaset.apps "web" deleted'
    with pytest.raises(NotFound):  # steer waited for the owner, which waited for its pod
        await client.get(Pod, held.metadata.name, ns)

    rs = await replicaset(client, ns)
    kept = await pod(client, ns, "web-1", rs)
    code, out, err = await steer(nats_url, "delete", "rs", "web", "-n", ns, "--cascade", "orphan")
    assert code == 0, err
    with pytest.raises(NotFound):
        await client.get(ReplicaSet, "web", ns)
    assert (await client.get(Pod, kept.metadata.name, ns)).metadata.owner_references == []


# -- `steer controllers` runs it


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane.running(tmp_path_factory.mktemp("gc")) as plane:
        plane.start_controllers()
        yield plane


async def test_steer_controllers_collects_the_pods_of_a_deleted_replicaset(plane: ControlPlane) -> None:
    async with plane.connect() as (client, store):
        ns = await plane.namespace(client)
        rs = await replicaset(client, ns)
        await client.patch(ReplicaSet, "web", {"spec": {"replicas": 2}}, ns)
        await wait_for(store, ReplicaSet, ns, "web", lambda r: r.status.replicas == 2, within=WITHIN)
        pods = await client.list(Pod, ns)
        assert [p.metadata.owner_references[0].uid for p in pods] == [rs.metadata.uid] * 2
        await client.delete(ReplicaSet, "web", ns)
        await all_gone(store, ns, *pods)


async def test_steer_controllers_unwinds_a_deployment_in_the_foreground(plane: ControlPlane) -> None:
    async with plane.connect() as (client, store):
        ns = await plane.namespace(client)
        await deployment(client, ns)
        await client.patch(Deployment, "web", {"spec": {"replicas": 3}}, ns)
        await wait_for(store, Deployment, ns, "web", lambda d: d.status.replicas == 3, within=WITHIN)
        marked = await client.delete(Deployment, "web", ns, propagation_policy="Foreground")
        assert marked.metadata.finalizers == [FOREGROUND_FINALIZER]
        await wait_gone(store, Deployment, ns, "web", within=WITHIN)
        assert await client.list(ReplicaSet, ns) == []  # the owner went last: nothing was recreated
        assert await client.list(Pod, ns) == []
