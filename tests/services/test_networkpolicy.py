"""NetworkPolicy through the API: stored with Kubernetes' defaults, refused with every cause named."""

from __future__ import annotations

from typing import Any

import pytest

from bus import kinds
from bus.client import Client
from bus.errors import Invalid, NotFound
from bus.resources import NetworkPolicy

POLICIES = kinds.BY_KIND["NetworkPolicy"]


def raw(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": {"podSelector": {"matchLabels": {"role": "db"}}, **spec},
    }


async def test_stored_with_policy_types_defaulted(client: Client, ns: str) -> None:
    egress = [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [{"port": 5978}]}]
    created = await client.create_raw(POLICIES, ns, raw("both", egress=egress))
    assert isinstance(created, NetworkPolicy)
    assert created.spec.policy_types == ["Ingress", "Egress"]
    assert created.spec.egress[0].ports[0].protocol == "TCP"
    stored = await client.get(NetworkPolicy, "both", ns)
    assert stored.spec.policy_types == ["Ingress", "Egress"]
    await client.create_raw(POLICIES, ns, raw("ingress-only", ingress=[{}]))
    assert (await client.get(NetworkPolicy, "ingress-only", ns)).spec.policy_types == ["Ingress"]
    assert {p.metadata.name for p in await client.list(NetworkPolicy, ns)} == {"both", "ingress-only"}


@pytest.mark.parametrize(
    ("spec", "causes"),
    [
        (
            {
                "ingress": [
                    {
                        "from": [{"ipBlock": {"cidr": "172.17.0.0/16", "except": ["10.0.0.0/24"]}}, {}],
                        "ports": [{"port": "redis", "endPort": 7000}, {"protocol": "SCTP"}],
                    }
                ]
            },
            {
                "spec.ingress[0].from[0].ipBlock.except[0]",
                "spec.ingress[0].from[1]",
                "spec.ingress[0].ports[0].endPort",
            },
        ),
        (
            {
                "egress": [
                    {"to": [{"ipBlock": {"cidr": "300.1.0.0/16"}}], "ports": [{"port": 90, "endPort": 80}]}
                ]
            },
            {"spec.egress[0].to[0].ipBlock.cidr", "spec.egress[0].ports[0].endPort"},
        ),
    ],
)
async def test_refused_with_each_cause_on_its_path(
    client: Client, ns: str, spec: dict[str, Any], causes: set[str]
) -> None:
    with pytest.raises(Invalid) as caught:
        await client.create_raw(POLICIES, ns, raw("bad", **spec))
    assert {cause.field for cause in caught.value.causes} == causes
    assert caught.value.message == 'NetworkPolicy.networking.k8s.io "bad" is invalid' or "bad" in str(
        caught.value
    )
    with pytest.raises(NotFound):
        await client.get(NetworkPolicy, "bad", ns)
