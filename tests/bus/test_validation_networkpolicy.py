"""NetworkPolicy through `decode_object`: Kubernetes' rules and defaulting, each cause on its path."""

from __future__ import annotations

from typing import Any

import pytest

from bus.errors import Invalid
from bus.resources import NetworkPolicy
from bus.validation import decode_object

Manifest = dict[str, Any]


def policy(**spec: Any) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"podSelector": {}, **spec},
    }


def ingress_port(**port: Any) -> Manifest:
    return policy(ingress=[{"ports": [port]}])


def ingress_from(*peers: Manifest) -> Manifest:
    return policy(ingress=[{"from": list(peers)}])


def decoded(manifest: Manifest) -> NetworkPolicy:
    obj = decode_object(manifest)
    assert isinstance(obj, NetworkPolicy)
    return obj


@pytest.mark.parametrize(
    ("spec", "types"),
    [
        ({}, ["Ingress"]),
        ({"ingress": [{}]}, ["Ingress"]),
        ({"egress": [{}]}, ["Ingress", "Egress"]),
        ({"egress": []}, ["Ingress"]),
        ({"policyTypes": ["Egress"]}, ["Egress"]),
        ({"policyTypes": ["Egress"], "ingress": [{}]}, ["Egress"]),
        ({"policyTypes": ["Ingress", "Egress"]}, ["Ingress", "Egress"]),
    ],
)
def test_policy_types_default_as_in_kubernetes(spec: Manifest, types: list[str]) -> None:
    assert decoded(policy(**spec)).spec.policy_types == types


def test_defaults_of_ports_and_selector() -> None:
    obj = decoded(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "p"},
            "spec": {"ingress": [{"ports": [{"port": 80}]}]},
        }
    )
    assert obj.spec.ingress[0].ports[0].protocol == "TCP"
    assert obj.spec.pod_selector.match_labels == {}


VALID = [
    ingress_port(port=80),
    ingress_port(port="http", protocol="UDP"),
    ingress_port(protocol="SCTP"),
    ingress_port(port=32000, endPort=32768),
    ingress_port(port=80, endPort=80),
    ingress_from({"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24", "172.17.2.7/32"]}}),
    ingress_from({"ipBlock": {"cidr": "10.0.0.5/16"}}),  # host bits, as Kubernetes parses it
    ingress_from({"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]}}),
    ingress_from({"podSelector": {"matchLabels": {"role": "frontend"}}, "namespaceSelector": {}}),
    ingress_from(
        {"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}}
    ),
    policy(egress=[{"to": [{"namespaceSelector": {"matchLabels": {"project": "x"}}}], "ports": [{}]}]),
]


@pytest.mark.parametrize("manifest", VALID)
def test_valid(manifest: Manifest) -> None:
    decoded(manifest)


INVALID: list[tuple[Manifest, str, str]] = [
    (ingress_port(protocol="ICMP"), "spec.ingress[0].ports[0].protocol", "Unsupported value"),
    (ingress_port(port=0), "spec.ingress[0].ports[0].port", "must be between 1 and 65535"),
    (ingress_port(port=70000), "spec.ingress[0].ports[0].port", "must be between 1 and 65535"),
    (ingress_port(port="HTTP"), "spec.ingress[0].ports[0].port", "alpha-numeric"),
    (
        ingress_port(port="http", endPort=90),
        "spec.ingress[0].ports[0].endPort",
        "may not be specified when `port` is non-numeric",
    ),
    (
        ingress_port(endPort=90),
        "spec.ingress[0].ports[0].endPort",
        "may not be specified when `port` is not specified",
    ),
    (
        ingress_port(port=90, endPort=80),
        "spec.ingress[0].ports[0].endPort",
        "must be greater than or equal to `port`",
    ),
    (ingress_port(port=90, endPort=70000), "spec.ingress[0].ports[0].endPort", "must be between 1 and 65535"),
    (ingress_from({}), "spec.ingress[0].from[0]", "must specify a peer"),
    (
        ingress_from({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}),
        "spec.ingress[0].from[0]",
        "may not specify both ipBlock and another peer",
    ),
    (ingress_from({"ipBlock": {"cidr": ""}}), "spec.ingress[0].from[0].ipBlock.cidr", "Required value"),
    (ingress_from({"ipBlock": {"cidr": "10.0.0.0"}}), "spec.ingress[0].from[0].ipBlock.cidr", "valid CIDR"),
    (ingress_from({"ipBlock": {"cidr": "1.0.0.0/33"}}), "spec.ingress[0].from[0].ipBlock.cidr", "CIDR"),
    (
        ingress_from({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}}),
        "spec.ingress[0].from[0].ipBlock.except[0]",
        "strict subset of `cidr`",
    ),
    (
        ingress_from({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/16"]}}),
        "spec.ingress[0].from[0].ipBlock.except[0]",
        "strict subset of `cidr`",
    ),
    (
        ingress_from({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/24", "nope"]}}),
        "spec.ingress[0].from[0].ipBlock.except[1]",
        "valid CIDR",
    ),
    (
        ingress_from({"podSelector": {"matchLabels": {"bad key!": "x"}}}),
        "spec.ingress[0].from[0].podSelector.matchLabels",
        "Invalid value",
    ),
    (
        ingress_from({"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
        "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values",
        "Required value",
    ),
    (
        policy(egress=[{"to": [{"ipBlock": {"cidr": "x/8"}}], "ports": [{"port": -1}]}]),
        "spec.egress[0].to[0].ipBlock.cidr",
        "valid CIDR",
    ),
    (policy(egress=[{"ports": [{"port": -1}]}]), "spec.egress[0].ports[0].port", "between 1 and 65535"),
    (policy(podSelector={"matchLabels": {"a": "b c"}}), "spec.podSelector.matchLabels[a]", "Invalid value"),
    (policy(policyTypes=["Ingress", "Sideways"]), "spec.policyTypes[1]", "Unsupported value"),
    (
        policy(policyTypes=["Ingress", "Egress", "Ingress"]),
        "spec.policyTypes",
        "may not specify more than two policyTypes",
    ),
    (policy(ingress=[{"sources": []}]), "spec.ingress[0].sources", "field not supported"),
]


@pytest.mark.parametrize(("manifest", "field", "message"), INVALID)
def test_invalid(manifest: Manifest, field: str, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        decode_object(manifest)
    found = [(c.field, c.message) for c in caught.value.causes]
    assert any(f == field and message in m for f, m in found), found


def test_every_cause_at_once() -> None:
    manifest = policy(
        ingress=[{"from": [{}], "ports": [{"port": 9, "endPort": 1}]}],
        egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}],
    )
    with pytest.raises(Invalid) as caught:
        decode_object(manifest)
    assert {c.field for c in caught.value.causes} == {
        "spec.ingress[0].from[0]",
        "spec.ingress[0].ports[0].endPort",
        "spec.egress[0].to[0].ipBlock.except[0]",
    }
