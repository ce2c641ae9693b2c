"""`steer wait` end to end: the CLI as a subprocess against the session's API, objects and their
conditions written through the API while it waits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats.errors
import pytest

from bus import kinds, subjects
from bus.client import Client
from bus.meta import LabelSelector, ObjectMeta
from bus.resources import Deployment, Node, Pod, ReplicaSet
from bus.resources.apps import DeploymentSpec, ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus
from bus.resources.cluster import NodeCondition, NodeStatus
from bus.resources.pod import Container, PodCondition, PodSpec, PodStatus, PodTemplateSpec
from bus.store import Store
from tests.cli.conftest import Result, Steer, steer_command


@contextlib.asynccontextmanager
async def watch_started(
    nc: Any, store: Store, kind: str, namespace: str, *, watchers: int = 1
) -> AsyncIterator[asyncio.Event]:
    """An event set once `watchers` watches of `namespace` in a kind's bucket have begun.

    JetStream announces every new consumer; those whose filter is the namespace's keys are the
    waits' watches, so an object created after this is certainly created after the waits began.
    """
    kv = await store.bucket(kinds.BY_KIND[kind])
    stream = kv._stream
    wanted = subjects.kv_subject(kv._name, subjects.key_filter(namespace))
    started = asyncio.Event()
    seen: set[str] = set()
    js = nc.jetstream()

    async def created(msg: Any) -> None:
        with contextlib.suppress(nats.errors.Error, TimeoutError):  # gone already: not a watch
            consumer = await js.consumer_info(stream, msg.subject.rpartition(".")[2])
            if consumer.config.filter_subject == wanted:
                seen.add(consumer.name)
                if len(seen) >= watchers:
                    started.set()

    sub = await nc.subscribe(f"$JS.EVENT.ADVISORY.CONSUMER.CREATED.{stream}.*", cb=created)
    await nc.flush()
    try:
        yield started
    finally:
        await sub.unsubscribe()


@contextlib.asynccontextmanager
async def steer_running(nats_url: str, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "STEER_NATS": nats_url}
    env.pop("STEER_NAMESPACE", None)
    proc = await asyncio.create_subprocess_exec(
        *steer_command(), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def finished(proc: asyncio.subprocess.Process, *, within: float = 30) -> Result:
    async with asyncio.timeout(within):
        out, err = await proc.communicate()
    assert b"Traceback" not in err, err.decode()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def until(event: asyncio.Event) -> None:
    async with asyncio.timeout(30):
        await event.wait()


def new_pod(name: str, ns: str, **meta: Any) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=ns, **meta),
        spec=PodSpec(containers=[Container(name="c", image="busybox:local")]),
    )


async def set_pod_ready(client: Client, pod: Pod, status: str) -> None:
    current = await client.get(Pod, pod.metadata.name, pod.metadata.namespace)
    current.status = PodStatus(conditions=[PodCondition(type="Ready", status=status)])  # type: ignore[arg-type]
    await client.update_status(current)


async def test_waits_for_a_pod_created_after_the_wait_began(
    client: Client, store: Store, nc: Any, nats_url: str, ns: str
) -> None:
    async with watch_started(nc, store, "Pod", ns, watchers=2) as started:
        async with (
            steer_running(nats_url, "wait", "--for=condition=Ready", "pod/web", "-n", ns) as ready,
            steer_running(
                nats_url, "wait", "--for=condition=Ready=false", "po", "web", "-n", ns
            ) as not_ready,
        ):
            await until(started)
            pod = await client.create(new_pod("web", ns))
            await set_pod_ready(client, pod, "False")
            assert await finished(not_ready) == Result(0, "pod/web condition met\n", "")
            assert ready.returncode is None  # Ready is False: still waiting
            await set_pod_ready(client, pod, "True")
            assert await finished(ready) == Result(0, "pod/web condition met\n", "")


async def test_waits_for_several_deletions(
    client: Client, store: Store, nc: Any, nats_url: str, ns: str
) -> None:
    for name in ("a", "b"):
        await client.create(new_pod(name, ns, finalizers=["example.com/hold"]))
        await client.delete(Pod, name, ns)  # held by its finalizer: terminating, not gone
    async with (
        watch_started(nc, store, "Pod", ns) as started,
        steer_running(nats_url, "wait", "--for=delete", "pod/a", "pod/b", "pod/never", "-n", ns) as proc,
    ):
        await until(started)
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            first = await proc.stdout.readline()
        assert first == b"pod/never deleted\n"  # never existed: done at once
        for name in ("b", "a"):
            await client.patch(Pod, name, {"metadata": {"finalizers": None}}, ns)
        result = await finished(proc)
    assert result.code == 0 and result.out.splitlines() == ["pod/b deleted", "pod/a deleted"]


def test_timeout_names_each_object_still_waited_for(steer: Steer, namespace: str) -> None:
    result = steer("wait", "--for=condition=Ready", "pod/ghost", "pod/spook", "-n", namespace, "--timeout=1s")
    assert result.code == 1 and result.out == ""
    assert result.err_lines == [
        "error: timed out waiting for the condition on pods/ghost",
        "error: timed out waiting for the condition on pods/spook",
    ]


async def test_deployment_timeout_and_zero_timeout_checks_once(client: Client, ns: str, steer: Steer) -> None:
    labels = {"app": "web"}
    await client.create(
        Deployment(
            metadata=ObjectMeta(name="web", namespace=ns),
            spec=DeploymentSpec(
                selector=LabelSelector(match_labels=labels),
                template=PodTemplateSpec(
                    metadata=ObjectMeta(labels=labels),
                    spec=PodSpec(containers=[Container(name="c", image="busybox:local")]),
                ),
            ),
        )
    )
    missed = steer("wait", "--for=condition=Available", "deploy/web", "-n", ns, "--timeout", "0")
    assert missed.code == 1
    assert missed.err_lines == ["error: timed out waiting for the condition on deployments/web"]
    gone = steer("wait", "--for=delete", "deployment/web", "-n", ns, "--timeout", "500ms")
    assert gone.code == 1 and "timed out waiting for the condition on deployments/web" in gone.err


async def test_replicasets_by_selector(client: Client, ns: str, steer: Steer) -> None:
    for name, status in (("one", "True"), ("two", "False")):
        labels = {"app": "x"}
        rs = await client.create(
            ReplicaSet(
                metadata=ObjectMeta(name=name, namespace=ns, labels=labels),
                spec=ReplicaSetSpec(
                    replicas=0,
                    selector=LabelSelector(match_labels={"app": name}),
                    template=PodTemplateSpec(
                        metadata=ObjectMeta(labels={"app": name}),
                        spec=PodSpec(containers=[Container(name="c", image="busybox:local")]),
                    ),
                ),
            )
        )
        rs.status = ReplicaSetStatus(conditions=[ReplicaSetCondition(type="Scaled", status=status)])  # type: ignore[arg-type]
        await client.update_status(rs)
    met = steer("wait", "--for=condition=Scaled", "rs", "-l", "app=x", "-n", ns, "--timeout", "0")
    assert met.code == 1
    assert met.out == "replicaset.apps/one condition met\n"
    assert met.err_lines == ["error: timed out waiting for the condition on replicasets/two"]
    false = steer("wait", "--for=condition=scaled=False", "replicasets", "--all", "-n", ns, "--timeout", "0")
    assert false.code == 1 and false.out == "replicaset.apps/two condition met\n"
    assert false.err_lines == ["error: timed out waiting for the condition on replicasets/one"]
    none = steer("wait", "--for=condition=Scaled", "rs", "-l", "app=none", "-n", ns)
    assert none.code == 1 and none.err_lines == ["error: no matching resources found (replicasets)"]
    nothing_to_delete = steer("wait", "--for=delete", "rs", "-l", "app=none", "-n", ns)
    assert nothing_to_delete.code == 0 and nothing_to_delete.out == ""


async def test_a_node_condition(client: Client, steer: Steer) -> None:
    name = f"wait-{uuid.uuid4().hex[:8]}"
    node = await client.create(Node(metadata=ObjectMeta(name=name)))
    node.status = NodeStatus(conditions=[NodeCondition(type="Ready", status="True")])
    await client.update_status(node)
    try:
        ready = steer("wait", "--for=condition=Ready", f"node/{name}", "--timeout", "10s")
        assert ready.code == 0 and ready.out == f"node/{name} condition met\n"
        down = steer("wait", "--for=condition=Ready=false", "nodes", name, "--timeout", "0")
        assert down.code == 1 and f"on nodes/{name}" in down.err
    finally:
        await client.delete(Node, name, "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pod/x"], "error: --for is required: use --for=delete or --for=condition=NAME"),
        (["--for=ready", "pod/x"], 'error: invalid --for "ready"'),
        (["--for=condition=Ready=maybe", "pod/x"], 'error: invalid --for "condition=Ready=maybe": a'),
        (["--for=delete", "--timeout", "soon", "pod/x"], 'error: --timeout: invalid duration "soon"'),
        (["--for=delete", "widgets/x"], 'error: the server doesn\'t have a resource type "widgets"'),
        (["--for=delete", "pods"], "error: specify names of pods to wait for, or -l SELECTOR, or --all"),
        (["--for=condition=Ready", "ep/web"], "error: endpoints have no status.conditions to wait for"),
        (["--for=delete", "pods", "-l", "app in ("], "error: invalid label selector"),
        (["--for=delete", "-A", "pod/x"], "error: -A waits for objects chosen by -l SELECTOR or --all"),
    ],
)
def test_bad_input_is_one_clear_line(steer: Steer, args: list[str], message: str) -> None:
    result = steer("wait", *args)
    assert result.code == 1 and result.out == ""
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith(message), result.err
