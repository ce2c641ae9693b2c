"""Poison in every bucket the scheduler and the controllers read (written with a raw KV put): they
keep running and keep working around it, and each poisoned key gets its Warning event once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bus import kinds, subjects
from bus.meta import LabelSelector, ObjectMeta
from bus.resources import Deployment, Event, Node, Pod
from bus.resources.apps import DeploymentSpec
from bus.resources.pod import Container, PodSpec, PodTemplateSpec
from bus.store import Store
from bus.unreadable import REASON
from tests.agents import node_ready
from tests.cluster import ControlPlane
from tests.conftest import wait_for_components
from tests.waiting import wait_for, wait_for_all

POISONED = ("Node", "Pod", "ReplicaSet", "Deployment", "Service", "Endpoints", "Lease")


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane.running(tmp_path_factory.mktemp("poison")) as plane:
        yield plane


def deployment(name: str, namespace: str, replicas: int) -> Deployment:
    labels = {"app": name}
    template = PodTemplateSpec(
        metadata=ObjectMeta(labels=labels),
        spec=PodSpec(containers=[Container(name="main", image="busybox:local")]),
    )
    return Deployment(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=DeploymentSpec(
            replicas=replicas, selector=LabelSelector(match_labels=labels), template=template
        ),
    )


async def test_scheduler_and_controllers_work_around_poison(plane: ControlPlane) -> None:
    async with plane.connect() as (client, store):
        ns = await plane.namespace(client)
        for kind in POISONED:
            info = kinds.BY_KIND[kind]
            kv = await store.bucket(info)
            await kv.put(subjects.key(ns if info.namespaced else "", f"bad-{kind.lower()}"), b"\x00poison")
        scheduler = plane.start_scheduler()
        controllers = plane.start_controllers()
        agent = plane.start_agent("fake")
        await wait_for(store, Node, "", agent.name, node_ready)
        await wait_for_components(plane.url, "steer-scheduler", 1)
        await client.create(deployment("web", ns, 2))
        await wait_for_all(
            store, Pod, ns, lambda pods: len(pods) == 2 and all(p.status.phase == "Running" for p in pods)
        )
        assert scheduler.poll() is None and controllers.poll() is None
        namespaced = [k for k in POISONED if kinds.BY_KIND[k].namespaced]
        events = await wait_for_all(
            store,
            Event,
            ns,
            lambda events: {e.involved_object.kind for e in events if e.reason == REASON} >= set(namespaced),
        )
        per_key = [(e.involved_object.kind, e.involved_object.name) for e in events if e.reason == REASON]
        assert len(per_key) == len(set(per_key))  # once per key, whoever met it
        assert await _cluster_scoped_reported(store)


async def _cluster_scoped_reported(store: Store) -> bool:
    events = await wait_for_all(
        store, Event, "default", lambda events: any(e.involved_object.name == "bad-node" for e in events)
    )
    return len([e for e in events if e.involved_object.name == "bad-node"]) == 1
