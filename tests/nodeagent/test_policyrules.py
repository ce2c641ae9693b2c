"""NetworkPolicy semantics of policyrules, in tables: which new connections a node lets through.

Node `n1` holds 10.244.0.0/24; `n2`'s pods (10.244.1.x) are peers only. Policies are decoded
from manifests as the API decodes them (so policyTypes are defaulted as stored).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bus.meta import ObjectMeta
from bus.resources import Namespace, NetworkPolicy, Pod
from bus.resources.pod import Container, ContainerPort, PodSpec, PodStatus
from bus.validation import decode_object
from nodeagent.network import policyrules
from nodeagent.network.policyrules import Owned, rules, script
from tests.nodeagent.nftsim import Packet, allowed

NODE, CIDR, GATEWAY = "n1", "10.244.0.0/24", "10.244.0.1"


def pod(
    name: str,
    ip: str,
    *,
    ns: str = "app",
    node: str = NODE,
    ports: dict[str, int] | None = None,
    udp: dict[str, int] | None = None,
    phase: str = "Running",
    **labels: str,
) -> Pod:
    declared = [ContainerPort(container_port=n, name=k) for k, n in (ports or {}).items()]
    declared += [ContainerPort(container_port=n, name=k, protocol="UDP") for k, n in (udp or {}).items()]
    return Pod(
        metadata=ObjectMeta(name=name, namespace=ns, labels=labels),
        spec=PodSpec(node_name=node, containers=[Container(name="c", image="busybox:local", ports=declared)]),
        status=PodStatus(phase=phase, pod_ip=ip),  # type: ignore[arg-type]
    )


PODS = {
    "db": pod("db", "10.244.0.5", role="db", ports={"redis": 6379}),
    "db2": pod("db2", "10.244.0.6", role="db", ports={"redis": 7000}),
    "plain": pod("plain", "10.244.0.7", role="db"),  # no named port
    "web": pod("web", "10.244.0.8", role="web", ports={"http": 8080}),
    "fe": pod("fe", "10.244.0.9", role="frontend"),
    "remote-fe": pod("remote-fe", "10.244.1.9", node="n2", role="frontend"),
    "other-fe": pod("other-fe", "10.244.1.10", ns="other", node="n2", role="frontend"),
    "mon": pod("mon", "10.244.1.11", ns="monitoring", node="n2", role="prometheus"),
    "remote-db": pod("remote-db", "10.244.1.12", node="n2", role="db", ports={"redis": 6380}),
    "dns": pod("dns", "10.244.1.13", ns="other", node="n2", udp={"dns": 5353}),
}
NAMESPACES = [
    Namespace(metadata=ObjectMeta(name="app", labels={"project": "myproject"})),
    Namespace(metadata=ObjectMeta(name="other")),
    Namespace(metadata=ObjectMeta(name="monitoring", labels={"team": "ops"})),
]


def policy(name: str, ns: str = "app", **spec: Any) -> NetworkPolicy:
    obj = decode_object(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"podSelector": {}, **spec},
        }
    )
    assert isinstance(obj, NetworkPolicy)
    return obj


def db_only(**spec: Any) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": {"role": "db"}}, **spec}


def frm(*peers: dict[str, Any], ports: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    rule: dict[str, Any] = {"from": list(peers)}
    if ports is not None:
        rule["ports"] = ports
    return [rule]


def to(*peers: dict[str, Any], ports: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    rule: dict[str, Any] = {"to": list(peers)}
    if ports is not None:
        rule["ports"] = ports
    return [rule]


FRONTEND = {"podSelector": {"matchLabels": {"role": "frontend"}}}
DENY_INGRESS = policy("default-deny-ingress", policyTypes=["Ingress"])
DENY_EGRESS = policy("default-deny-egress", policyTypes=["Egress"])


def ip(name: str) -> str:
    return PODS[name].status.pod_ip


def connect(src: str, dst: str, protocol: str = "tcp", port: int = 80) -> Packet:
    return Packet(ip(src) if src in PODS else src, ip(dst) if dst in PODS else dst, protocol, port)


def judge(policies: list[NetworkPolicy], packet: Packet, hook: str = "forward") -> bool:
    ruleset = rules(policies, PODS.values(), NAMESPACES, node=NODE, pod_cidr=CIDR)
    return allowed(ruleset, packet, hook=hook)


CASES: list[tuple[str, list[NetworkPolicy], Packet, bool]] = [
    # selection: no policy, or one that selects other pods, governs nothing
    ("no policy", [], connect("fe", "db"), True),
    ("other pods selected", [policy("p", **db_only(policyTypes=["Ingress"]))], connect("db", "fe"), True),
    (
        "other namespace's policy",
        [policy("p", ns="other", policyTypes=["Ingress"])],
        connect("fe", "db"),
        True,
    ),
    ("default deny ingress", [DENY_INGRESS], connect("fe", "db"), False),
    ("deny ingress from another node", [DENY_INGRESS], connect("remote-fe", "db"), False),
    ("deny ingress leaves egress", [DENY_INGRESS], connect("db", "remote-fe"), True),
    ("deny ingress: replies pass", [DENY_INGRESS], Packet(ip("remote-fe"), ip("db"), established=True), True),
    ("pods of other nodes are theirs", [DENY_INGRESS], connect("fe", "remote-db"), True),
    ("a pod reaches itself", [DENY_INGRESS, DENY_EGRESS], connect("db", "db"), True),
    ("terminated pods govern nothing", [DENY_INGRESS], Packet(ip("fe"), "10.244.0.99"), True),
    ("allow all ingress", [DENY_INGRESS, policy("all", ingress=[{}])], connect("remote-fe", "db"), True),
    # union of rules and policies
    *(
        (
            f"union: {src}->{dst}:{port}",
            [
                policy("fe-redis", **db_only(ingress=frm(FRONTEND, ports=[{"port": 6379}]))),
                policy(
                    "mon-metrics",
                    **db_only(
                        ingress=frm(
                            {"namespaceSelector": {"matchLabels": {"team": "ops"}}}, ports=[{"port": 9090}]
                        )
                    ),
                ),
            ],
            connect(src, dst, port=port),
            ok,
        )
        for src, dst, port, ok in [
            ("fe", "db", 6379, True),
            ("remote-fe", "db", 6379, True),
            ("fe", "db", 9090, False),
            ("mon", "db", 9090, True),
            ("mon", "db", 6379, False),
            ("other-fe", "db", 6379, False),  # podSelector alone: the policy's namespace only
            ("web", "db", 6379, False),
            ("mon", "web", 9090, True),  # web is not selected
        ]
    ),
    (
        "pod and namespace selector together",
        [policy("p", **db_only(ingress=frm({**FRONTEND, "namespaceSelector": {}})))],
        connect("other-fe", "db"),
        True,
    ),
    (
        "namespace by its implicit name label",
        [
            policy(
                "p",
                ingress=frm({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}}}),
            )
        ],
        connect("other-fe", "db"),
        True,
    ),
    (
        "namespace selector excludes",
        [policy("p", ingress=frm({"namespaceSelector": {"matchLabels": {"project": "myproject"}}}))],
        connect("other-fe", "db"),
        False,
    ),
    (
        "matchExpressions",
        [
            policy(
                "p",
                ingress=frm(
                    {
                        "podSelector": {
                            "matchExpressions": [
                                {"key": "role", "operator": "In", "values": ["frontend", "web"]}
                            ]
                        }
                    }
                ),
            )
        ],
        connect("web", "db"),
        True,
    ),
    (
        "peers that are nobody allow nothing",
        [policy("p", ingress=frm({"podSelector": {"matchLabels": {"role": "ghost"}}}))],
        connect("fe", "db"),
        False,
    ),
    # protocols and ports
    (
        "protocol",
        [policy("p", ingress=[{"ports": [{"port": 53, "protocol": "UDP"}]}])],
        connect("fe", "db", port=53),
        False,
    ),
    (
        "udp port",
        [policy("p", ingress=[{"ports": [{"port": 53, "protocol": "UDP"}]}])],
        connect("fe", "db", "udp", 53),
        True,
    ),
    (
        "any port of a protocol",
        [policy("p", ingress=[{"ports": [{"protocol": "UDP"}]}])],
        connect("fe", "db", "udp", 9),
        True,
    ),
    (
        "sctp",
        [policy("p", ingress=[{"ports": [{"protocol": "SCTP", "port": 9}]}])],
        connect("fe", "db", "sctp", 9),
        True,
    ),
    *(
        (
            f"endPort {port}",
            [policy("p", ingress=[{"ports": [{"port": 32000, "endPort": 32768}]}])],
            connect("fe", "db", port=port),
            ok,
        )
        for port, ok in [(31999, False), (32000, True), (32500, True), (32768, True), (32769, False)]
    ),
    # named ports, resolved on each destination pod
    *(
        (
            f"named ingress port {dst}:{port}",
            [policy("p", **db_only(ingress=[{"ports": [{"port": "redis"}]}]))],
            connect("fe", dst, port=port),
            ok,
        )
        for dst, port, ok in [
            ("db", 6379, True),
            ("db", 7000, False),
            ("db2", 7000, True),
            ("db2", 6379, False),
            ("plain", 6379, False),
            ("plain", 80, False),
        ]
    ),
    *(
        (
            f"named egress port {dst}:{port}",
            [policy("p", **db_only(policyTypes=["Egress"], egress=[{"ports": [{"port": "redis"}]}]))],
            connect("db", dst, port=port),
            ok,
        )
        for dst, port, ok in [
            ("remote-db", 6380, True),
            ("remote-db", 6379, False),
            ("db2", 7000, True),
            ("fe", 6379, False),
        ]
    ),
    (
        "named egress port among peers only",
        [policy("p", egress=to({"namespaceSelector": {}}, ports=[{"port": "dns", "protocol": "UDP"}]))],
        connect("fe", "dns", "udp", 5353),
        True,
    ),
    (
        "named egress port: protocol must match",
        [policy("p", egress=to({"namespaceSelector": {}}, ports=[{"port": "dns"}]))],
        connect("fe", "dns", "udp", 5353),
        False,
    ),
    # ipBlock with except
    *(
        (
            f"ipBlock {src}",
            [policy("p", ingress=frm({"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}}))],
            Packet(src, ip("db")),
            ok,
        )
        for src, ok in [
            ("172.17.0.9", True),
            ("172.17.1.9", False),
            ("172.17.2.9", True),
            ("172.18.0.1", False),
        ]
    ),
    (
        "ipBlock covers pod addresses",
        [policy("p", **db_only(egress=to({"ipBlock": {"cidr": "10.244.1.0/24"}})))],
        connect("db", "remote-fe"),
        True,
    ),
    # policyTypes as defaulted
    ("egress rules make an Egress policy", [policy("p", egress=to(FRONTEND))], connect("db", "web"), False),
    ("egress rules default Ingress too", [policy("p", egress=[{}])], connect("fe", "db"), False),
    ("egress rules allow", [policy("p", egress=to(FRONTEND))], connect("db", "remote-fe"), True),
    (
        "ingress rules only: egress free",
        [policy("p", ingress=frm(FRONTEND))],
        connect("db", "remote-db"),
        True,
    ),
    (
        "explicit Egress only: ingress free",
        [policy("p", policyTypes=["Egress"], ingress=frm(FRONTEND))],
        connect("remote-db", "db"),
        True,
    ),
    # both ends governed: both must allow
    (
        "egress allows, ingress denies",
        [policy("out", egress=[{}]), policy("in", **db_only(ingress=frm(FRONTEND)))],
        connect("web", "db"),
        False,
    ),
    (
        "ingress allows, egress denies",
        [
            policy("out", **{"podSelector": {"matchLabels": {"role": "frontend"}}}, egress=to(FRONTEND)),
            policy("in", **db_only(ingress=frm(FRONTEND))),
        ],
        connect("fe", "db"),
        False,
    ),
    (
        "both allow",
        [
            policy("out", egress=to({"podSelector": {"matchLabels": {"role": "db"}}})),
            policy("in", **db_only(ingress=frm(FRONTEND))),
        ],
        connect("fe", "db"),
        True,
    ),
    ("deny egress to another node", [DENY_EGRESS], connect("db", "remote-fe"), False),
    ("deny egress: ingress free", [DENY_EGRESS], connect("remote-fe", "db"), True),
]


@pytest.mark.parametrize(("case", "policies", "packet", "ok"), CASES, ids=[c[0] for c in CASES])
def test_forward(case: str, policies: list[NetworkPolicy], packet: Packet, ok: bool) -> None:
    assert judge(policies, packet) == ok


DNS_TCP = Packet(ip("db"), GATEWAY, "tcp", 53)
DNS_UDP = Packet(ip("db"), GATEWAY, "udp", 53)


@pytest.mark.parametrize(
    ("case", "policies", "packet", "ok"),
    [
        ("no policy", [], DNS_UDP, True),
        ("deny ingress only", [DENY_INGRESS], DNS_UDP, True),
        ("default deny egress", [DENY_EGRESS], DNS_UDP, False),
        ("default deny egress, tcp", [DENY_EGRESS], DNS_TCP, False),
        (
            "allowed port 53",
            [DENY_EGRESS, policy("dns", egress=[{"ports": [{"port": 53, "protocol": "UDP"}]}])],
            DNS_UDP,
            True,
        ),
        (
            "allowed udp only",
            [DENY_EGRESS, policy("dns", egress=[{"ports": [{"port": 53, "protocol": "UDP"}]}])],
            DNS_TCP,
            False,
        ),
        (
            "pods-only peers",
            [policy("dns", egress=to({"namespaceSelector": {}}, ports=[{"port": 53, "protocol": "UDP"}]))],
            DNS_UDP,
            False,
        ),
        (
            "ipBlock of the gateway",
            [policy("dns", egress=to({"ipBlock": {"cidr": "10.244.0.1/32"}}))],
            DNS_UDP,
            True,
        ),
        ("replies", [DENY_EGRESS], Packet(ip("db"), GATEWAY, "udp", 53, established=True), True),
    ],
)
def test_input(case: str, policies: list[NetworkPolicy], packet: Packet, ok: bool) -> None:
    assert judge(policies, packet, hook="input") == ok


# -- the objects and the script

NAME = re.compile(r"netpol-[a-z0-9-]+")


def test_names_are_ours_valid_and_stable() -> None:
    policies = [
        policy("fe", **db_only(ingress=frm(FRONTEND, ports=[{"port": "redis"}]))),
        policy("eg", egress=to({"ipBlock": {"cidr": "10.0.0.0/8"}}, ports=[{"port": "http"}, {"port": 1}])),
    ]
    first = rules(policies, PODS.values(), NAMESPACES, node=NODE, pod_cidr=CIDR)
    again = rules(reversed(policies), reversed(list(PODS.values())), NAMESPACES, node=NODE, pod_cidr=CIDR)
    assert script(first, table="t") == script(again, table="t")
    for name in [*first.chains, *first.sets]:
        assert NAME.fullmatch(name) and len(name) < 32, name
    assert set(policyrules.BASE_CHAINS) <= set(first.chains)


def test_script_replaces_only_our_objects() -> None:
    ruleset = rules([DENY_INGRESS], PODS.values(), NAMESPACES, node=NODE, pod_cidr=CIDR)
    previous = Owned(frozenset({"netpol-in-0123456789ab", *ruleset.chains}), frozenset({"netpol-00-in0"}))
    text = script(ruleset, table="steer_0a0b0c0d", previous=previous)
    lines = text.splitlines()
    assert all(line.split()[3] == "steer_0a0b0c0d" for line in lines)
    assert all(NAME.fullmatch(line.split()[4]) for line in lines if not line.startswith("add table"))
    flushed = lines.index("flush chain ip steer_0a0b0c0d netpol-in-0123456789ab")
    assert lines[flushed + 1] == "delete chain ip steer_0a0b0c0d netpol-in-0123456789ab"
    assert "delete set ip steer_0a0b0c0d netpol-00-in0" in lines
    assert lines.index("flush chain ip steer_0a0b0c0d netpol-forward") < flushed
    assert not any(line.startswith("delete") and "netpol-forward" in line for line in lines)


def test_owned_reads_a_listing() -> None:
    listing = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "ip", "name": "t"}},
            {"chain": {"family": "ip", "table": "t", "name": "netpol-forward"}},
            {"chain": {"family": "ip", "table": "t", "name": "service-abc"}},
            {"set": {"family": "ip", "table": "t", "name": "netpol-00-in0"}},
            {"map": {"family": "ip", "table": "t", "name": "service-ips"}},
            {"rule": {"family": "ip", "table": "t", "chain": "netpol-forward"}},
        ]
    }
    assert policyrules.owned(json.dumps(listing)) == Owned(
        frozenset({"netpol-forward"}), frozenset({"netpol-00-in0"})
    )
    assert policyrules.owned("") == Owned()


def test_ipblock_with_except_is_a_few_ranges() -> None:
    ruleset = rules(
        [policy("p", ingress=frm({"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}}))],
        PODS.values(),
        NAMESPACES,
        node=NODE,
        pod_cidr=CIDR,
    )
    (only,) = ruleset.sets.values()
    assert only.elements == ("172.17.0.0/24", "172.17.2.0-172.17.255.255")


def test_table_name() -> None:
    assert re.fullmatch(r"steer_[0-9a-f]{8}", policyrules.table_name("n1"))
    assert policyrules.table_name("n1") != policyrules.table_name("n2")
