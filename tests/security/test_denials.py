"""Each identity against the real nats-server's permissions: what it may not do is refused at
once (never after a request timeout), and nothing stored changes."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from pathlib import Path

import msgspec
import nats.js.errors
import pytest

from bus import credentials, kinds, subjects
from bus.connection import Credentials, Denied, connect, subscribe_checked
from bus.errors import Forbidden, NotFound
from bus.meta import LabelSelector, ObjectMeta
from bus.protocol import ERROR_CODE_HEADER
from bus.resources import Deployment, Namespace, Pod
from bus.resources.apps import DeploymentSpec
from bus.resources.pod import Container, PodSpec, PodTemplateSpec
from bus.streams import ExecRequest, run_exec
from tests.securecluster import SecureCluster

# A denial comes back with the server's asynchronous error, well within the clients' 5 s timeout.
PROMPT = 3.0


def pod(name: str, namespace: str, node: str = "") -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=PodSpec(containers=[Container(name="main", image="busybox:local")], node_name=node),
    )


def deployment(name: str, namespace: str) -> Deployment:
    labels = {"app": name}
    return Deployment(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=DeploymentSpec(
            selector=LabelSelector(match_labels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels),
                spec=PodSpec(containers=[Container(name="web", image="busybox:local")]),
            ),
        ),
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def test_an_anonymous_connection_is_refused(secure: SecureCluster) -> None:
    with pytest.raises(credentials.CredentialsError, match="requires credentials"):
        await connect(secure.url, name="anonymous")


async def test_a_wrong_credential_is_refused_at_once_naming_its_file(
    secure: SecureCluster, tmp_path: Path
) -> None:
    seed, _ = credentials.new_key()  # a key the server never heard of
    path = tmp_path / "stranger.nk"
    credentials.write(path, identity="stranger", role="admin", seed=seed)
    async with asyncio.timeout(PROMPT):
        with pytest.raises(credentials.CredentialsError, match=f"refused the credentials in {path}"):
            await connect(
                secure.url, name="stranger", credentials=Credentials(creds_file=str(path)), wait=True
            )


async def test_a_file_that_is_no_credential_is_named(tmp_path: Path) -> None:
    path = tmp_path / "junk.nk"
    path.write_text("hello\n")
    with pytest.raises(credentials.CredentialsError, match=f"credentials file {path} holds neither"):
        await connect("nats://127.0.0.1:1", name="x", credentials=Credentials(creds_file=str(path)))


async def test_a_viewer_cannot_create(secure: SecureCluster) -> None:
    name = unique("viewed")
    async with secure.connect_as("vera") as (client, _):
        async with asyncio.timeout(PROMPT):
            with pytest.raises(Forbidden, match='user "vera" cannot create pods in the namespace "mine"'):
                await client.create(pod(name, "mine"))
        assert await client.list(Pod, "mine") is not None  # reading is allowed
    async with secure.connect_as("admin") as (admin, _):
        with pytest.raises(NotFound):
            await admin.get(Pod, name, "mine")


async def test_an_editor_is_confined_to_its_namespace(secure: SecureCluster) -> None:
    name = unique("web")
    async with secure.connect_as("alice") as (client, _):
        async with asyncio.timeout(PROMPT):
            with pytest.raises(Forbidden) as refused:
                await client.create(deployment(name, "victim"))
        assert (
            refused.value.message == 'user "alice" cannot create deployments.apps in the namespace "victim"'
        )
        created = await client.create(deployment(name, "mine"))
        assert created.metadata.resource_version
    async with secure.connect_as("admin") as (admin, _):
        with pytest.raises(NotFound):
            await admin.get(Deployment, name, "victim")


async def test_a_namespace_token_cannot_smuggle_a_cluster_scoped_write(secure: SecureCluster) -> None:
    """`steer.api.delete.namespaces.mine` is within alice's rights by its tokens; the API requires
    `_` for namespaces, so namespace "victim" stays."""
    async with secure.connect_as("alice") as (client, _):
        body = msgspec.json.encode({"name": "victim"})
        reply = await client.nc.request("steer.api.delete.namespaces.mine", body, timeout=5)
        assert reply.headers and reply.headers[ERROR_CODE_HEADER] == "400"
        assert b'must be \\"_\\", not \\"mine\\"' in reply.data
        with pytest.raises(Forbidden, match='user "alice" cannot delete namespaces at the cluster scope'):
            await client.delete(Namespace, "victim", "")
    async with secure.connect_as("admin") as (admin, _):
        assert (await admin.get(Namespace, "victim", "")).metadata.deletion_timestamp is None


async def test_a_cluster_scoped_kind_needs_the_cluster_token_and_a_namespaced_one_never_takes_it(
    secure: SecureCluster,
) -> None:
    async with secure.connect_as("admin") as (admin, _):
        for subject in ("steer.api.get.namespaces.default", "steer.api.list.nodes._all"):
            reply = await admin.nc.request(subject, msgspec.json.encode({"name": "default"}), timeout=5)
            assert reply.headers and reply.headers[ERROR_CODE_HEADER] == "400", subject
        for subject in ("steer.api.list.pods._", "steer.api.get.pods._"):
            reply = await admin.nc.request(subject, msgspec.json.encode({"name": "x"}), timeout=5)
            assert reply.headers and reply.headers[ERROR_CODE_HEADER] == "400", subject
            assert b"namespaced" in reply.data


async def test_a_node_cannot_speak_for_another(secure: SecureCluster) -> None:
    name = unique("bound")
    async with secure.connect_as("admin") as (admin, _):
        stored = await admin.create(pod(name, "mine", node="node-2"))
    async with secure.connect_as("node-1", node="node-1") as (own, _):
        # Through node-2's subjects: NATS refuses the publish.
        async with secure.connect_as("node-1", node="node-2") as (impostor, _):
            reported = msgspec.structs.replace(stored)
            reported.status.phase = "Failed"
            async with asyncio.timeout(PROMPT):
                with pytest.raises(
                    Forbidden, match='user "node-1" cannot status pods in the namespace "mine"'
                ):
                    await impostor.update_status(reported)
            async with asyncio.timeout(PROMPT):
                with pytest.raises(Forbidden):
                    await impostor.create(Namespace(metadata=ObjectMeta(name="node-2")))
        # Through its own subjects: the API's NodeRestriction refuses a pod bound elsewhere.
        with pytest.raises(Forbidden, match="bound elsewhere"):
            await own.update_status(reported)
        with pytest.raises(Forbidden, match="bound elsewhere"):
            await own.get(Pod, name, "mine")
        with pytest.raises(Forbidden, match="bound elsewhere"):
            await own.delete(Pod, name, "mine")
        assert name not in [p.metadata.name for p in await own.list(Pod, "*")]
    async with secure.connect_as("admin") as (admin, _):
        after = await admin.get(Pod, name, "mine")
        assert after.metadata.resource_version == stored.metadata.resource_version
        assert after.status.phase != "Failed"


async def test_a_node_cannot_read_the_store_nor_serve_another_nodes_exec(secure: SecureCluster) -> None:
    async with secure.connect_as("node-1") as (client, store):
        with pytest.raises(Forbidden):
            await store.get(Pod, "mine", "anything")
        with pytest.raises(Denied):
            await subscribe_checked(client.nc, subjects.node_stream_listen("node-2", "exec"))
        with pytest.raises(Denied):
            await subscribe_checked(client.nc, subjects.node_feed("node-2"))
        await subscribe_checked(client.nc, subjects.node_stream_listen("node-1", "exec"))  # its own


async def test_no_one_but_the_api_writes_jetstream(secure: SecureCluster) -> None:
    name = unique("direct")
    async with secure.connect_as("controllers") as (client, store):
        js = client.nc.jetstream(timeout=5.0)
        key = subjects.kv_subject(subjects.bucket("pods"), subjects.key("mine", name))
        async with asyncio.timeout(PROMPT):
            with pytest.raises(Denied):
                await js.publish(key, msgspec.json.encode(pod(name, "mine")))
        kv = await js.key_value(subjects.bucket("pods"))  # opening (stream info) is reading
        with pytest.raises(Denied):
            await kv.put(subjects.key("mine", name), b"{}")
        with pytest.raises(Denied):
            await kv.purge(subjects.key("mine", name))
        with pytest.raises(Denied):
            await js.delete_stream(subjects.kv_stream(subjects.bucket("pods")))
        with pytest.raises(Denied):
            await js.add_stream(name="STOLEN", subjects=["stolen.>"])
        # Reading is what it may do.
        items, _ = await store.list(Pod, "mine")
        assert name not in [p.metadata.name for p in items]
    async with secure.connect_as("admin") as (admin, store):
        with pytest.raises(Denied):
            await admin.nc.jetstream(timeout=5.0).delete_stream(subjects.EVENTS_STREAM)
        with pytest.raises(NotFound):
            await admin.get(Pod, name, "mine")
        info = await admin.nc.jetstream(timeout=5.0).stream_info(subjects.kv_stream(subjects.bucket("pods")))
        assert info.config.name


async def test_a_user_reads_only_its_own_inbox_and_namespaces(secure: SecureCluster) -> None:
    async with secure.connect_as("vera") as (client, store):
        for subject in (
            ">",
            "_INBOX.>",
            subjects.inbox_pattern("admin"),
            "steer.api.>",
            "steer.feed.services",
        ):
            with pytest.raises(Denied):
                await subscribe_checked(client.nc, subject)
        await subscribe_checked(client.nc, subjects.inbox_pattern("vera"))
        items, _ = await store.list(Pod, "mine")  # a watch of its namespace
        assert isinstance(items, list)
        for namespace, where in (
            ("victim", 'in the namespace "victim"'),
            (subjects.ALL, "across all namespaces"),
        ):
            async with asyncio.timeout(PROMPT):
                with pytest.raises(Forbidden, match=f'user "vera" cannot list pods {where}'):
                    await store.list(Pod, namespace)
        with pytest.raises(Forbidden, match='user "vera" cannot get pods in the namespace "victim"'):
            await store.get(Pod, "victim", "anything")
        with pytest.raises(Forbidden):
            await store.list(Namespace, "")  # cluster-scoped: not for a confined user


async def test_a_viewer_cannot_exec_and_an_editor_only_in_its_namespace(secure: SecureCluster) -> None:
    async with secure.connect_as("vera") as (client, _):
        async with asyncio.timeout(PROMPT):
            with pytest.raises(Denied):
                await run_exec(client.nc, "node-1", ExecRequest(namespace="mine", pod="p", command=["id"]))
    async with secure.connect_as("alice") as (client, _):
        with pytest.raises(Denied):
            await run_exec(client.nc, "node-1", ExecRequest(namespace="victim", pod="p", command=["id"]))


async def test_only_the_api_joins_the_api_queue_group(secure: SecureCluster) -> None:
    for identity in ("controllers", "scheduler", "admin", "node-1"):
        async with secure.connect_as(identity) as (client, _):
            for subject in (subjects.api_listen("get"), subjects.node_listen()):
                with pytest.raises(Denied):
                    await subscribe_checked(client.nc, subject, queue=subjects.API_QUEUE_GROUP)


async def test_an_edit_user_confined_to_mine_reads_nothing_of_victim(secure: SecureCluster) -> None:
    async with secure.connect_as("alice") as (client, _):
        with pytest.raises(Forbidden, match='user "alice" cannot list pods in the namespace "victim"'):
            await client.list(Pod, "victim")
        with pytest.raises(Forbidden, match='user "alice" cannot list pods across all namespaces'):
            await client.list(Pod, "*")
        with pytest.raises(Forbidden, match='user "alice" cannot list pods at the cluster scope'):
            await client.list_kind(kinds.BY_PLURAL["pods"], "")


def test_a_credential_readable_by_others_is_warned_about(tmp_path: Path) -> None:
    seed, _ = credentials.new_key()
    path = tmp_path / "loose.nk"
    credentials.write(path, identity="loose", role="view", seed=seed)
    assert credentials.exposure(path) == ""
    path.chmod(0o644)
    assert "chmod 600" in credentials.exposure(path)


async def test_jetstream_api_denials_are_prompt(secure: SecureCluster) -> None:
    async with secure.connect_as("otto") as (client, _):
        js = client.nc.jetstream(timeout=30.0)  # the denial must not wait for this
        async with asyncio.timeout(PROMPT):
            with pytest.raises(Denied):
                await js.delete_key_value(subjects.bucket("pods"))
        with pytest.raises((Denied, nats.js.errors.Error)):
            await js.purge_stream(subjects.kv_stream(subjects.bucket("pods")))


async def test_a_reply_subject_that_is_no_inbox_is_not_answered(secure: SecureCluster) -> None:
    """A responder may publish to any reply subject it receives: naming node-2's feed as the
    reply subject of a get would have the API feed node-2 a pod. The API answers inboxes only."""
    log = secure.tmp / "api-0.log"
    async with secure.connect_as("node-2") as (node, _), secure.connect_as("alice") as (alice, _):
        fed = await subscribe_checked(node.nc, subjects.node_feed("node-2"))
        before = log.read_text().count("not an inbox; not answered")
        body = msgspec.json.encode({"name": "anything"})
        await alice.nc.publish(subjects.api("get", "pods", "mine"), body, reply=subjects.node_feed("node-2"))
        async with asyncio.timeout(10):
            for _ in itertools.count():
                if log.read_text().count("not an inbox; not answered") > before:
                    break
                await asyncio.sleep(0.05)  # the API's log is the only witness of a reply not sent
        await node.nc.flush()
        assert fed.pending_msgs == 0
