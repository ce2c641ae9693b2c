"""The resolv.conf a pod gets, by dnsPolicy and dnsConfig, as the kubelet writes it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from bus.meta import ObjectMeta
from bus.resources import Pod
from bus.resources.pod import Container, DNSPolicy, PodDNSConfig, PodDNSConfigOption, PodSpec
from nodeagent.dns import ResolverConfig, read_resolv_conf, resolv_conf

GATEWAY = "10.244.3.1"
HOST = ResolverConfig(("192.0.2.53",), ("corp.example",), ("timeout:2",))
CLUSTER = (
    "nameserver 10.244.3.1\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
)


def pod(policy: DNSPolicy = "ClusterFirst", config: PodDNSConfig | None = None, **spec: Any) -> Pod:
    return Pod(
        metadata=ObjectMeta(name="web-1", namespace="shop"),
        spec=PodSpec(
            containers=[Container(name="c", image="i")], dns_policy=policy, dns_config=config, **spec
        ),
    )


def option(name: str, value: str | None = None) -> PodDNSConfigOption:
    return PodDNSConfigOption(name=name, value=value)


CASES = [
    ("cluster first", pod(), CLUSTER),
    ("with host net, on the pod network", pod("ClusterFirstWithHostNet"), CLUSTER),
    (
        "default: the host's",
        pod("Default"),
        "nameserver 192.0.2.53\nsearch corp.example\noptions timeout:2\n",
    ),
    ("none", pod("None", PodDNSConfig(nameservers=["10.0.0.53"])), "nameserver 10.0.0.53\n"),
    (
        "dnsConfig appended, options overridden by name",
        pod(
            config=PodDNSConfig(
                nameservers=["10.0.0.53", GATEWAY],
                searches=["corp.example", "svc.cluster.local"],
                options=[option("ndots", "2"), option("edns0"), option("attempts", "")],
            )
        ),
        "nameserver 10.244.3.1\nnameserver 10.0.0.53\n"
        "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
        "options ndots:2 edns0 attempts\n",
    ),
    (
        "default merged with dnsConfig",
        pod("Default", PodDNSConfig(options=[option("timeout", "5"), option("rotate")])),
        "nameserver 192.0.2.53\nsearch corp.example\noptions timeout:5 rotate\n",
    ),
    (
        "none with everything",
        pod(
            "None",
            PodDNSConfig(
                nameservers=["1.2.3.4"], searches=["a.example", "b.example"], options=[option("ndots", "1")]
            ),
        ),
        "nameserver 1.2.3.4\nsearch a.example b.example\noptions ndots:1\n",
    ),
    (
        "at most 3 nameservers",
        pod(config=PodDNSConfig(nameservers=["10.0.0.1", "10.0.0.2", "10.0.0.3"])),
        "nameserver 10.244.3.1\nnameserver 10.0.0.1\nnameserver 10.0.0.2\n"
        "search shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
    ),
]


@pytest.mark.parametrize(("case", "the_pod", "text"), CASES, ids=[c[0] for c in CASES])
def test_resolv_conf(case: str, the_pod: Pod, text: str) -> None:
    assert resolv_conf(the_pod, GATEWAY, host=HOST) == text


def test_the_cluster_domain_is_configurable() -> None:
    assert resolv_conf(pod(), GATEWAY, domain="steer.internal.") == (
        "nameserver 10.244.3.1\n"
        "search shop.svc.steer.internal svc.steer.internal steer.internal\n"
        "options ndots:5\n"
    )


def test_cluster_first_on_the_host_network_is_default_as_in_kubernetes() -> None:
    spec = SimpleNamespace(dns_policy="ClusterFirst", dns_config=None, host_network=True)
    on_host = cast(Pod, SimpleNamespace(metadata=ObjectMeta(name="h", namespace="shop"), spec=spec))
    assert resolv_conf(on_host, GATEWAY, host=HOST) == HOST.text()
    spec.dns_policy = "ClusterFirstWithHostNet"
    assert resolv_conf(on_host, GATEWAY, host=HOST) == CLUSTER


def test_search_domains_are_cut_to_32_and_2048_characters() -> None:
    many = [f"d{i}.example" for i in range(40)]
    search = resolv_conf(pod(config=PodDNSConfig(searches=many)), GATEWAY).splitlines()[1].split()[1:]
    assert search == ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", *many[:29]]
    long = [f"{i:02d}" + "x" * 60 + ".example" for i in range(32)]  # 70 characters each
    config = PodDNSConfig(nameservers=["10.0.0.53"], searches=long)
    search = resolv_conf(pod("None", config), GATEWAY).splitlines()[1].split()[1:]
    assert search == long[:28]  # 28 * 70 + 27 blanks <= 2048 < 29 * 70 + 28


def test_the_hosts_resolv_conf_is_read_as_the_kubelet_reads_it() -> None:
    text = (
        "# written by hand\n"
        "nameserver 192.0.2.53\n"
        "nameserver 192.0.2.54 ; second\n"
        "search old.example\n"
        "search corp.example. lab.example\n"
        "domain ignored.example\n"
        "options ndots:1 timeout:2\n"
        "options rotate\n"
    )
    assert read_resolv_conf(text) == ResolverConfig(
        ("192.0.2.53", "192.0.2.54"), ("corp.example", "lab.example"), ("ndots:1", "timeout:2", "rotate")
    )
