"""The DNS fields of a pod spec (subdomain, dnsPolicy, dnsConfig), checked as Kubernetes checks them."""

from __future__ import annotations

from typing import Any

import pytest

from bus.errors import Invalid
from bus.resources import Deployment, Pod
from bus.validation import decode_object


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {"containers": [{"name": "web", "image": "busybox:local"}], **spec},
    }


def causes(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(Invalid) as caught:
        decode_object(manifest)
    return [(cause.field, cause.message) for cause in caught.value.causes]


@pytest.mark.parametrize(
    "spec",
    [
        {"hostname": "db-0", "subdomain": "db"},
        {"dnsPolicy": "ClusterFirst"},
        {"dnsPolicy": "ClusterFirstWithHostNet"},
        {"dnsPolicy": "Default"},
        {"dnsPolicy": "None", "dnsConfig": {"nameservers": ["10.0.0.53"]}},
        {
            "dnsConfig": {
                "nameservers": ["10.0.0.53", "2001:db8::53", "192.0.2.1"],
                "searches": ["corp.example", "lab.example."],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
            }
        },
        {"dnsConfig": {"searches": [f"d{i}.example" for i in range(32)]}},
    ],
)
def test_valid(spec: dict[str, Any]) -> None:
    assert isinstance(decode_object(pod(**spec)), Pod)


def test_the_fields_are_kept() -> None:
    obj = decode_object(
        pod(
            subdomain="db",
            dnsPolicy="None",
            dnsConfig={"nameservers": ["10.0.0.53"], "options": [{"name": "ndots", "value": "1"}]},
        )
    )
    assert isinstance(obj, Pod)
    assert (obj.spec.subdomain, obj.spec.dns_policy) == ("db", "None")
    assert obj.spec.dns_config is not None
    assert obj.spec.dns_config.nameservers == ["10.0.0.53"]
    assert [(o.name, o.value) for o in obj.spec.dns_config.options] == [("ndots", "1")]


INVALID = [
    ({"subdomain": "DB_0"}, "spec.subdomain", "RFC 1123 label"),
    ({"subdomain": "a" * 64}, "spec.subdomain", "must be no more than 63 characters"),
    ({"dnsPolicy": "Sometimes"}, "spec.dnsPolicy", 'Unsupported value: "Sometimes"'),
    (
        {"dnsPolicy": "None"},
        "spec.dnsConfig",
        "Required value: must provide `dnsConfig` when `dnsPolicy` is None",
    ),
    (
        {"dnsPolicy": "None", "dnsConfig": {"searches": ["corp.example"]}},
        "spec.dnsConfig.nameservers",
        "Required value: must provide at least one DNS nameserver when `dnsPolicy` is None",
    ),
    (
        {"dnsConfig": {"nameservers": ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]}},
        "spec.dnsConfig.nameservers",
        "must not have more than 3 nameservers",
    ),
    (
        {"dnsConfig": {"nameservers": ["dns.example"]}},
        "spec.dnsConfig.nameservers[0]",
        "must be a valid IP address",
    ),
    (
        {"dnsConfig": {"searches": [f"d{i}.example" for i in range(33)]}},
        "spec.dnsConfig.searches",
        "must not have more than 32 search paths",
    ),
    (
        {"dnsConfig": {"searches": ["a" * 63 + f".d{i}.example" for i in range(31)]}},
        "spec.dnsConfig.searches",
        "must not have more than 2048 characters (including spaces) in the search list",
    ),
    ({"dnsConfig": {"searches": ["Corp_Example"]}}, "spec.dnsConfig.searches[0]", "RFC 1123 subdomain"),
    (
        {"dnsConfig": {"options": [{"value": "2"}]}},
        "spec.dnsConfig.options[0]",
        "Required value: must not be empty",
    ),
    (
        {"dnsConfig": {"options": [{"name": "ndots:1\nnameserver"}]}},
        "spec.dnsConfig.options[0].name",
        "must not contain blanks or control characters",
    ),
    (
        {"dnsConfig": {"options": [{"name": "ndots", "value": "1 rotate"}]}},
        "spec.dnsConfig.options[0].value",
        "must not contain blanks or control characters",
    ),
]


@pytest.mark.parametrize(
    ("spec", "field", "fragment"), INVALID, ids=[f"{c[1]}:{i}" for i, c in enumerate(INVALID)]
)
def test_invalid(spec: dict[str, Any], field: str, fragment: str) -> None:
    found = causes(pod(**spec))
    assert any(f == field and fragment in message for f, message in found), found


def test_templates_are_checked_too() -> None:
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "i"}], "dnsPolicy": "None"},
            },
        },
    }
    assert (
        "spec.template.spec.dnsConfig",
        "Required value: must provide `dnsConfig` when `dnsPolicy` is None",
    ) in (causes(manifest))
    del manifest["spec"]["template"]["spec"]["dnsPolicy"]
    assert isinstance(decode_object(manifest), Deployment)
