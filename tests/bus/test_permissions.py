"""The permissions each role gets, checked as tables (the server-side proof is tests/security)."""

from __future__ import annotations

import pytest

from bus import permissions, subjects
from bus.permissions import Identity, Role

EVERYONE = [
    Identity("api", "api", "UAPI"),
    Identity("scheduler", "scheduler", "USCH"),
    Identity("controllers", "controllers", "UCTL"),
    Identity("node-1", "node", "UN1"),
    Identity("node-2", "node", "UN2"),
    Identity("admin", "admin", "UADM"),
    Identity("alice", "edit", "UALI", ("mine",)),
    Identity("vera", "view", "UVER", ("mine",)),
    Identity("otto", "view", "UOTT"),
]


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` one token, `>` the rest."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def grants(name: str) -> permissions.Permissions:
    identity = next(i for i in EVERYONE if i.name == name)
    return permissions.permissions(identity, EVERYONE)


def may_publish(name: str, subject: str) -> bool:
    granted = grants(name)
    allowed = any(matches(p, subject) for p in granted.publish)
    return allowed and not any(matches(p, subject) for p in granted.publish_deny)


def may_subscribe(name: str, subject: str) -> bool:
    return any(matches(p, subject) for p in grants(name).subscribe)


NAMES = [i.name for i in EVERYONE]


@pytest.mark.parametrize("name", NAMES)
def test_only_the_api_writes_jetstream_or_serves_the_api(name: str) -> None:
    api = name == "api"
    for subject in (
        "$KV.steer-pods.mine.web",
        "$JS.API.STREAM.CREATE.X",
        "$JS.API.STREAM.DELETE.KV_steer-pods",
        "$JS.API.STREAM.PURGE.KV_steer-pods",
        "$JS.API.STREAM.UPDATE.KV_steer-pods",
        "$JS.API.STREAM.MSG.DELETE.KV_steer-pods",
        "$JS.API.CONSUMER.DURABLE.CREATE.KV_steer-pods.x",
        "steer.events.mine.Pod.web",
    ):
        assert may_publish(name, subject) == api, subject
    assert may_subscribe(name, "steer.api.get.pods.mine") == api
    assert may_subscribe(name, "steer.node.node-1.get.pods.mine") == api


@pytest.mark.parametrize("name", NAMES)
def test_each_reads_its_own_inbox_only(name: str) -> None:
    for other in NAMES:
        assert may_subscribe(name, f"{subjects.inbox_prefix(other)}.abc.1") == (other == name)
    assert not may_subscribe(name, "_INBOX.abc")
    assert not may_subscribe(name, ">")


@pytest.mark.parametrize(
    ("subject", "node_1"),
    [
        ("steer.node.node-1.status.pods.mine", True),
        ("steer.node.node-2.status.pods.mine", False),
        ("steer.node.node-1.create.nodes._", True),
        ("steer.api.get.pods.mine", False),
        ("steer.metrics.node.node-1", True),
        ("steer.metrics.node.node-2", False),
        ("$JS.API.STREAM.INFO.KV_steer-deployments", False),
        ("$JS.API.CONSUMER.CREATE.KV_steer-services.c1.$KV.steer-services.>", False),
        # What its NetworkPolicy enforcer watches, read-only; not every pod (their environment)
        ("$JS.API.STREAM.INFO.KV_steer-pods", False),
        ("$JS.API.CONSUMER.CREATE.KV_steer-pods.c1.$KV.steer-pods.>", False),
        ("$JS.API.CONSUMER.CREATE.KV_steer-networkpolicies.c1.$KV.steer-networkpolicies.>", True),
        ("$JS.API.CONSUMER.CREATE.KV_steer-namespaces.c1.$KV.steer-namespaces.>", True),
        ("$KV.steer-networkpolicies.mine.deny", False),
        # What its routes to other nodes' pods watch, read-only
        ("$JS.API.CONSUMER.CREATE.KV_steer-nodes.c1.$KV.steer-nodes.>", True),
        ("$KV.steer-nodes.node-2", False),
        ("$JS.API.STREAM.PURGE.KV_steer-pods", False),
        ("_INBOX_alice.x.1", True),  # a log stream to a user who may ask for one
        ("_INBOX_vera.x.1", False),
    ],
)
def test_a_node_publishes_only_under_its_own_name(subject: str, node_1: bool) -> None:
    assert may_publish("node-1", subject) == node_1


@pytest.mark.parametrize(
    ("subject", "node_1"),
    [
        ("steer.node.node-1.feed.pods", True),
        ("steer.node.node-2.feed.pods", False),
        ("steer.node.node-1.exec.mine", True),
        ("steer.node.node-2.exec.mine", False),
        ("steer.node.node-1.logs.victim", True),
        ("steer.node.node-1.control.abc", True),
        ("steer.feed.services", True),
        ("steer.feed.endpoints", True),
        ("steer.events.mine.Pod.web", False),
    ],
)
def test_a_node_subscribes_only_under_its_own_name_and_the_service_feeds(subject: str, node_1: bool) -> None:
    assert may_subscribe("node-1", subject) == node_1


@pytest.mark.parametrize(
    ("name", "subject", "allowed"),
    [
        ("vera", "steer.api.get.pods.mine", True),
        ("vera", "steer.api.list.pods.mine", True),
        ("vera", "steer.api.create.pods.mine", False),
        ("vera", "steer.api.get.pods.victim", False),
        ("vera", "steer.api.list.pods._all", False),
        ("vera", "steer.node.node-1.exec.mine", False),
        ("vera", "$JS.API.CONSUMER.CREATE.KV_steer-pods.c1.$KV.steer-pods.mine.>", True),
        ("vera", "$JS.API.CONSUMER.CREATE.KV_steer-pods.c1.$KV.steer-pods.victim.>", False),
        ("vera", "$JS.API.CONSUMER.CREATE.KV_steer-pods.c1.$KV.steer-pods.>", False),
        ("vera", "$JS.API.CONSUMER.CREATE.KV_steer-pods", False),
        ("vera", "$JS.API.DIRECT.GET.KV_steer-pods.$KV.steer-pods.mine.web", True),
        ("vera", "$JS.API.DIRECT.GET.KV_steer-pods.$KV.steer-pods.victim.web", False),
        ("vera", "$JS.API.CONSUMER.CREATE.KV_steer-nodes.c1.$KV.steer-nodes.>", False),
        ("vera", "$JS.API.CONSUMER.CREATE.STEER_EVENTS.c1.steer.events.mine.*.*", True),
        ("vera", "$JS.API.CONSUMER.CREATE.STEER_EVENTS.c1.steer.events.victim.*.*", False),
        ("alice", "steer.api.create.deployments.mine", True),
        ("alice", "steer.api.delete.namespaces.mine", True),  # the API refuses it: `_` is required
        ("alice", "steer.api.delete.namespaces._", False),
        ("alice", "steer.api.create.deployments.prod", False),
        ("alice", "steer.node.node-1.exec.mine", True),
        ("alice", "steer.node.node-1.logs.victim", False),
        ("otto", "steer.api.list.pods._all", True),
        ("otto", "steer.api.list.nodes._", True),
        ("otto", "steer.api.delete.pods.mine", False),
        ("otto", "$JS.API.CONSUMER.CREATE.KV_steer-pods", True),
        ("admin", "steer.api.delete.namespaces._", True),
        ("admin", "steer.node.node-2.exec.victim", True),
        ("scheduler", "steer.api.patch.pods.mine", True),
        ("scheduler", "steer.api.delete.pods.mine", False),
        ("scheduler", "steer.api.create.deployments.mine", False),
        ("scheduler", "steer.api.update.leases.steer-system", True),
        ("scheduler", "steer.api.update.leases.mine", False),
        ("controllers", "steer.api.create.pods.mine", True),
        ("controllers", "steer.api.delete.namespaces._", False),
        ("controllers", "steer.api.create.namespaces._", False),
    ],
)
def test_users_and_components_publish_what_their_role_allows(name: str, subject: str, allowed: bool) -> None:
    assert may_publish(name, subject) == allowed


def test_an_unconfined_editor_writes_no_cluster_scoped_object() -> None:
    editor = Identity("ed", "edit", "UED")
    granted = permissions.permissions(editor)
    assert any(matches(p, "steer.api.create.pods.any") for p in granted.publish)
    assert any(matches(p, "steer.api.delete.namespaces._") for p in granted.publish_deny)
    assert not any(matches(p, "steer.api.get.namespaces._") for p in granted.publish_deny)


def test_the_config_lists_every_identity_once() -> None:
    text = permissions.authorization_config(EVERYONE)
    assert text.count('"nkey"') == len(EVERYONE)
    roles: list[Role] = [i.role for i in EVERYONE]
    assert set(roles) == set(permissions.ROLES)
