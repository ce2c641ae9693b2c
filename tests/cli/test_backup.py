"""`steer backup` and `steer restore` end to end: the session's cluster is backed up and restored
into a second, fresh cluster (its own nats-server and API), and the objects compared."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bus import kinds
from bus.client import Client
from bus.connection import connect
from bus.meta import ObjectMeta, OwnerReference, Resource
from bus.resources import Pod
from bus.resources.pod import Container, PodSpec
from bus.store import Store
from bus.validation import decode_object
from cli import backupfile
from tests.cli.conftest import Result, Steer, steer_command
from tests.conftest import own_cluster


@pytest.fixture(scope="module")
def fresh_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second cluster: its own nats-server and one API replica, empty but for the seeded namespaces."""
    with own_cluster(tmp_path_factory.mktemp("fresh")) as url:
        yield url


def steer_at(url: str, *args: str) -> Result:
    env = {**os.environ, "STEER_NATS": url}
    proc = subprocess.run([*steer_command(), *args], capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return Result(proc.returncode, proc.stdout, proc.stderr)


def make(raw: dict[str, Any]) -> Resource:
    return decode_object(raw)


def owned_by(owner: Resource) -> list[dict[str, Any]]:
    ref = {"apiVersion": owner.API_VERSION, "kind": owner.kind, "name": owner.metadata.name}
    return [{**ref, "uid": owner.metadata.uid, "controller": True}]


POD_SPEC = {"containers": [{"name": "c", "image": "busybox:local", "command": ["sleep", "9"]}]}


async def populate(client: Client, ns: str) -> None:
    """A deployment owning a replica set owning a pod with a status, a service with endpoints,
    an autoscaler, and a pod being deleted (held by a finalizer)."""
    selector = {"matchLabels": {"app": "web"}}
    template = {"metadata": {"labels": {"app": "web"}}, "spec": POD_SPEC}
    meta = {"namespace": ns, "labels": {"app": "web", "tier": "front"}, "annotations": {"note": "kept"}}
    deploy = await client.create(
        make(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {**meta, "name": "web"},
                "spec": {"replicas": 1, "selector": selector, "template": template},
            }
        )
    )
    rs = await client.create(
        make(
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {**meta, "name": "web-abc", "ownerReferences": owned_by(deploy)},
                "spec": {"replicas": 1, "selector": selector, "template": template},
            }
        )
    )
    rs.status.replicas = 1
    rs.status.observed_generation = 1
    await client.update_status(rs)
    pod = await client.create(
        make(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {**meta, "name": "web-abc-x1", "ownerReferences": owned_by(rs)},
                "spec": POD_SPEC,
            }
        )
    )
    assert isinstance(pod, Pod)
    pod.status.phase = "Running"
    pod.status.pod_ip = "10.1.2.3"
    await client.update_status(pod)
    await client.create(
        make(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"namespace": ns, "name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
            }
        )
    )
    await client.create(
        make(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"namespace": ns, "name": "web"},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "minReplicas": 1,
                    "maxReplicas": 3,
                },
            }
        )
    )
    leaving = make(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"namespace": ns, "name": "leaving", "finalizers": ["example.com/hold"]},
            "spec": POD_SPEC,
        }
    )
    await client.create(leaving)
    await client.delete(Pod, "leaving", ns)


async def everything(url: str) -> dict[tuple[str, str, str], Resource]:
    nc = await connect(url, name="test-backup")
    try:
        client = Client(nc)
        found: dict[tuple[str, str, str], Resource] = {}
        for info in kinds.KINDS:
            for obj in (await client.list_kind(info, "_all"))[0]:
                found[(obj.kind, obj.metadata.namespace, obj.metadata.name)] = obj
        return found
    finally:
        await nc.close()


def owners(obj: Resource) -> list[tuple[str, str, bool | None]]:
    return [(ref.kind, ref.name, ref.controller) for ref in obj.metadata.owner_references]


def owner_uids_resolve(obj: Resource, restored: dict[tuple[str, str, str], Resource]) -> bool:
    """Each ownerReference names by uid the owner restored in the same namespace."""
    return all(_uid_of(ref, obj, restored) == ref.uid for ref in obj.metadata.owner_references)


def _uid_of(ref: OwnerReference, obj: Resource, restored: dict[tuple[str, str, str], Resource]) -> str:
    owner = restored.get((ref.kind, obj.metadata.namespace, ref.name))
    return owner.metadata.uid if owner is not None else ""


async def test_backup_and_restore_into_a_fresh_cluster(
    client: Client, steer: Steer, nats_url: str, fresh_url: str, tmp_path: Path
) -> None:
    ns = f"b-{uuid.uuid4().hex[:10]}"
    await client.create(make({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
    await populate(client, ns)
    file = tmp_path / "cluster.jsonl"

    taken = steer("backup", str(file))
    assert taken.code == 0, taken.err
    assert taken.out.startswith("backed up "), taken.out
    backup = backupfile.read(str(file))
    assert {obj.kind for obj in backup.objects}.isdisjoint({"Event", "Lease"})
    assert all(obj.metadata.resource_version for obj in backup.objects)  # recorded as served
    original = {(o.kind, o.metadata.namespace, o.metadata.name): o for o in backup.objects}
    assert ("Pod", ns, "leaving") in original

    restored = steer_at(fresh_url, "restore", str(file))
    assert restored.code == 0, restored.err
    assert f"pod/leaving -n {ns} skipped (it was being deleted)" in restored.out
    assert "namespace/default already exists (left unchanged)" in restored.out
    assert f"deployment.apps/web -n {ns} created" in restored.out

    now = await everything(fresh_url)
    namespaces = {name for kind, _, name in original if kind == "Namespace"}
    for key, obj in original.items():
        # Other tests' objects in namespaces that are gone (written to the store directly) are
        # skipped, as is whatever was being deleted.
        homeless = kinds.of(obj).namespaced and obj.metadata.namespace not in namespaces
        if obj.metadata.deletion_timestamp is not None or homeless:
            assert key not in now
            continue
        assert key in now, key
        copy = now[key]
        assert getattr(copy, "spec", None) == getattr(obj, "spec", None), key
        assert copy.metadata.labels == obj.metadata.labels, key
        assert copy.metadata.annotations == obj.metadata.annotations, key
        assert owners(copy) == owners(obj), key
        assert owner_uids_resolve(copy, now), key
    pod = now[("Pod", ns, "web-abc-x1")]
    assert isinstance(pod, Pod)
    assert (pod.status.phase, pod.status.pod_ip) == ("Running", "10.1.2.3")  # status restored
    rs = now[("ReplicaSet", ns, "web-abc")]
    assert rs.status.replicas == 1  # type: ignore[attr-defined]
    assert rs.status.observed_generation == rs.metadata.generation  # type: ignore[attr-defined]

    # Again: everything exists now, and nothing is overwritten.
    again = steer_at(fresh_url, "restore", str(file))
    assert again.code == 0, again.err
    assert " 0 created, 0 replaced, " in again.out, again.out
    assert await everything(fresh_url) == now


async def test_restore_overwrite_replaces_what_differs(
    client: Client, steer: Steer, fresh_url: str, tmp_path: Path
) -> None:
    ns = f"o-{uuid.uuid4().hex[:10]}"
    await client.create(make({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
    await populate(client, ns)
    file = tmp_path / "cluster.jsonl"
    assert steer("backup", str(file)).code == 0
    assert steer_at(fresh_url, "restore", str(file)).code == 0
    nc = await connect(fresh_url, name="test-backup")
    try:
        patch = {"metadata": {"labels": {"tier": "back"}}}
        await Client(nc).patch_kind(kinds.BY_KIND["Deployment"], "web", patch, ns)
    finally:
        await nc.close()

    kept = steer_at(fresh_url, "restore", str(file))
    assert kept.code == 0 and f"deployment.apps/web -n {ns} already exists" in kept.out, kept.err
    assert (await everything(fresh_url))[("Deployment", ns, "web")].metadata.labels["tier"] == "back"

    replaced = steer_at(fresh_url, "restore", str(file), "--overwrite")
    assert replaced.code == 0 and f"deployment.apps/web -n {ns} replaced" in replaced.out, replaced.err
    assert (await everything(fresh_url))[("Deployment", ns, "web")].metadata.labels["tier"] == "front"


def test_a_bad_backup_file_is_refused_whole(fresh_url: str, tmp_path: Path) -> None:
    ns = f"x-{uuid.uuid4().hex[:10]}"
    file = tmp_path / "bad.jsonl"
    file.write_text(
        '{"kind": "SteerBackup", "version": 1}\n'
        f'{{"apiVersion": "v1", "kind": "Namespace", "metadata": {{"name": "{ns}"}}}}\n'
        '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "'
        + ns
        + '"}, "spec": {"containers": [{"name": "c", "image": "i", "colour": "red"}]}}\n'
        '{"kind": "SteerBackupEnd", "objects": 2}\n'
    )
    result = steer_at(fresh_url, "restore", str(file))
    assert result.code == 1
    assert result.err.startswith(f"error: {file}, line 3: "), result.err
    assert "colour" in result.err
    assert ("Namespace", "", ns) not in asyncio.run(everything(fresh_url))  # nothing written


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        ("", 0, "empty: not a steersman backup"),
        ('{"kind": "Pod"}\n', 1, "not a steersman backup"),
        ('{"kind": "SteerBackup", "version": 2}\n', 1, "backup format version 2 is not supported"),
        ('{"kind": "SteerBackup", "version": 1}\n\n{"kind": \n', 3, "not JSON"),
        ('{"kind": "SteerBackup", "version": 1}\n[1]\n', 2, "each line must be a JSON object"),
        ('{"kind": "SteerBackup", "version": 1}\n{"kind": "Nope"}\n', 2, 'no kind "Nope"'),
        (
            '{"kind": "SteerBackup", "version": 1}\n'
            '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}\n',
            2,
            "no closing SteerBackupEnd line",
        ),
        (
            '{"kind": "SteerBackup", "version": 1}\n'
            '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}\n'
            '{"kind": "SteerBackupEnd", "objects": 3}\n',
            3,
            "counts 3 objects but the file holds 1",
        ),
        (
            '{"kind": "SteerBackup", "version": 1}\n'
            '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}\n'
            '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}\n'
            '{"kind": "SteerBackupEnd", "objects": 2}\n',
            3,
            "namespace/a already appears on line 2",
        ),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path: Path, content: str, line: int, problem: str) -> None:
    file = tmp_path / "b.jsonl"
    file.write_text(content)
    with pytest.raises(backupfile.BackupFileError) as raised:
        backupfile.read(str(file))
    where = f"{file}, line {line}: " if line else f"{file}: "
    assert raised.value.message.startswith(where), raised.value.message
    assert problem in raised.value.message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(backupfile.BackupFileError, match="missing.jsonl: cannot read it: No such file"):
        backupfile.read(str(tmp_path / "missing.jsonl"))


async def test_an_object_whose_namespace_went_is_skipped(
    client: Client, store: Store, steer: Steer, fresh_url: str, tmp_path: Path
) -> None:
    """A backup is no snapshot: a namespace may go between the listing of the namespaces and of
    the pods. Its pods (here written to the store with no namespace at all) are skipped, said."""
    gone = f"g-{uuid.uuid4().hex[:10]}"
    spec = PodSpec(containers=[Container(name="c", image="busybox:local")])
    await store.create(Pod(metadata=ObjectMeta(name="left", namespace=gone), spec=spec))
    file = tmp_path / "cluster.jsonl"
    assert steer("backup", str(file)).code == 0
    restored = steer_at(fresh_url, "restore", str(file))
    assert restored.code == 0, restored.out + restored.err
    assert f"pod/left -n {gone} skipped (its namespace is in neither the backup nor here)" in restored.out
