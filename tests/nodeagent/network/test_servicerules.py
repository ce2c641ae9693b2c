"""The table's objects for given Services and Endpoints, and the changes from one state to the next."""

from __future__ import annotations

import re

import pytest

from bus.resources import Endpoints, Service
from nodeagent.network.servicerules import (
    AFFINITY_PREFIX,
    CLUSTER_IPS,
    ENDPOINT_PREFIX,
    EXTERNAL_PREFIX,
    NO_ENDPOINT_NODEPORTS,
    NO_ENDPOINT_SERVICES,
    SERVICE_IPS,
    SERVICE_NODEPORTS,
    SERVICE_PREFIX,
    Balancing,
    Ruleset,
    chain_name,
    desired,
    diff,
    ipv4,
)
from tests.nodeagent.network.objects import by_key, endpoints, service

WEB = "default/web/tcp/http"
SVC = chain_name(SERVICE_PREFIX, WEB)
EXT = chain_name(EXTERNAL_PREFIX, WEB)
REJECT = "goto reject-chain"
NFT_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9/_.\-]*$")


def ep_chain(ip: str, port: int = 8080, base: str = WEB) -> str:
    return chain_name(ENDPOINT_PREFIX, f"{base}__{ip}/{port}")


def elements(ruleset: Ruleset) -> dict[str, dict[str, str]]:
    return {name: dict(items) for name, items in ruleset.elements.items() if items}


CASES: list[tuple[str, list[Service], list[Endpoints], dict[str, dict[str, str]], set[str]]] = [
    (
        "ClusterIP with two ready endpoints",
        [service("web", "10.96.0.10")],
        [endpoints("web", ["10.244.0.6", "10.244.0.5"])],
        {SERVICE_IPS: {"10.96.0.10 . tcp . 80": f"goto {SVC}"}},
        {SVC, ep_chain("10.244.0.5"), ep_chain("10.244.0.6")},
    ),
    ("headless: nothing", [service("web", "None")], [endpoints("web", ["10.244.0.5"])], {}, set()),
    ("no clusterIP yet: nothing", [service("web", "")], [endpoints("web", ["10.244.0.5"])], {}, set()),
    ("IPv6 clusterIP: nothing", [service("web", "fd00::10")], [endpoints("web", ["10.244.0.5"])], {}, set()),
    (
        "no Endpoints: rejected",
        [service("web", "10.96.0.10")],
        [],
        {NO_ENDPOINT_SERVICES: {"10.96.0.10 . tcp . 80": REJECT}},
        set(),
    ),
    (
        "only not-ready, wrong-port-name, wrong-protocol or junk addresses: rejected",
        [service("web", "10.96.0.10")],
        [endpoints("web", ["not-an-ip", "fd00::5"], not_ready=["10.244.0.7"])],
        {NO_ENDPOINT_SERVICES: {"10.96.0.10 . tcp . 80": REJECT}},
        set(),
    ),
    (
        "an Endpoints port of another name is not this port's",
        [service("web", "10.96.0.10")],
        [endpoints("web", ["10.244.0.5"], port_name="metrics")],
        {NO_ENDPOINT_SERVICES: {"10.96.0.10 . tcp . 80": REJECT}},
        set(),
    ),
    (
        "NodePort: the nodePort on the node's address, masqueraded",
        [service("web", "10.96.0.10", {"name": "http", "port": 80, "nodePort": 30080}, type_="NodePort")],
        [endpoints("web", ["10.244.0.5"])],
        {
            SERVICE_IPS: {"10.96.0.10 . tcp . 80": f"goto {SVC}"},
            SERVICE_NODEPORTS: {"tcp . 30080": f"goto {EXT}"},
        },
        {SVC, EXT, ep_chain("10.244.0.5")},
    ),
    (
        "NodePort without endpoints: both rejected",
        [service("web", "10.96.0.10", {"name": "http", "port": 80, "nodePort": 30080}, type_="NodePort")],
        [],
        {
            NO_ENDPOINT_SERVICES: {"10.96.0.10 . tcp . 80": REJECT},
            NO_ENDPOINT_NODEPORTS: {"tcp . 30080": REJECT},
        },
        set(),
    ),
    (
        "LoadBalancer: its port and its nodePort on the node's address",
        [service("web", "10.96.0.10", {"name": "http", "port": 80, "nodePort": 30080}, type_="LoadBalancer")],
        [endpoints("web", ["10.244.0.5"])],
        {
            SERVICE_IPS: {"10.96.0.10 . tcp . 80": f"goto {SVC}"},
            SERVICE_NODEPORTS: {"tcp . 30080": f"goto {EXT}", "tcp . 80": f"goto {EXT}"},
        },
        {SVC, EXT, ep_chain("10.244.0.5")},
    ),
    (
        "a nodePort on a ClusterIP Service is not opened",
        [service("web", "10.96.0.10", {"name": "http", "port": 80, "nodePort": 30080})],
        [endpoints("web", ["10.244.0.5"])],
        {SERVICE_IPS: {"10.96.0.10 . tcp . 80": f"goto {SVC}"}},
        {SVC, ep_chain("10.244.0.5")},
    ),
    (
        "UDP",
        [service("dns", "10.96.0.53", {"name": "dns", "port": 53, "protocol": "UDP"})],
        [endpoints("dns", ["10.244.0.5"], port=5353, port_name="dns", protocol="UDP")],
        {SERVICE_IPS: {"10.96.0.53 . udp . 53": f"goto {chain_name(SERVICE_PREFIX, 'default/dns/udp/dns')}"}},
        {
            chain_name(SERVICE_PREFIX, "default/dns/udp/dns"),
            ep_chain("10.244.0.5", 5353, "default/dns/udp/dns"),
        },
    ),
    (
        "two Services on one nodePort: the older keeps it",
        [
            service("web", "10.96.0.10", {"name": "http", "port": 80, "nodePort": 30080}, type_="NodePort"),
            service(
                "old", "10.96.0.11", {"name": "http", "port": 80, "nodePort": 30080}, type_="NodePort", age=60
            ),
        ],
        [],
        {
            NO_ENDPOINT_SERVICES: {"10.96.0.10 . tcp . 80": REJECT, "10.96.0.11 . tcp . 80": REJECT},
            NO_ENDPOINT_NODEPORTS: {"tcp . 30080": REJECT},
        },
        set(),
    ),
    (
        "ports outside 1-65535 are left out",
        [service("web", "10.96.0.10", {"name": "http", "port": 0})],
        [endpoints("web", ["10.244.0.5"], port=70000)],
        {},
        set(),
    ),
]


@pytest.mark.parametrize(
    ("services", "eps", "want_elements", "want_chains"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_desired(
    services: list[Service],
    eps: list[Endpoints],
    want_elements: dict[str, dict[str, str]],
    want_chains: set[str],
) -> None:
    ruleset = desired(services, by_key(*eps))
    cluster_ips = {ip: REJECT for s in services if (ip := ipv4(s.spec.cluster_ip))}  # every one, any port
    assert elements(ruleset) == want_elements | ({CLUSTER_IPS: cluster_ips} if cluster_ips else {})
    assert set(ruleset.chains) == want_chains
    assert all(NFT_NAME.match(name) and len(name) <= 255 for name in ruleset.chains)


@pytest.mark.parametrize(("balancing", "numgen"), [("round-robin", "inc"), ("random", "random")])
def test_a_service_chain_picks_a_ready_endpoint_in_turn_or_at_random_and_endpoint_chains_dnat(
    balancing: Balancing, numgen: str
) -> None:
    eps = by_key(endpoints("web", ["10.244.0.6", "10.244.0.5"]))
    ruleset = desired([service("web", "10.96.0.10")], eps, balancing=balancing)
    a, b = ep_chain("10.244.0.5"), ep_chain("10.244.0.6")
    assert ruleset.chains[SVC] == (f"numgen {numgen} mod 2 vmap {{ 0 : goto {a}, 1 : goto {b} }}",)
    assert ruleset.chains[a] == (
        "ip saddr 10.244.0.5 jump mark-for-masquerade",  # hairpin
        "meta l4proto tcp dnat to 10.244.0.5:8080",
    )


@pytest.mark.parametrize(("timeout", "want"), [(0, 10800), (60, 60)])
def test_client_ip_affinity_remembers_each_client_per_endpoint(timeout: int, want: int) -> None:
    ruleset = desired(
        [service("web", "10.96.0.10", affinity=timeout)], by_key(endpoints("web", ["10.244.0.5"]))
    )
    [(set_name, seconds)] = ruleset.affinity_sets.items()
    assert set_name.startswith(AFFINITY_PREFIX) and seconds == want
    chain = ep_chain("10.244.0.5")
    assert ruleset.chains[SVC][0] == f"ip saddr @{set_name} goto {chain}"
    assert f"update @{set_name} {{ ip saddr }}" in ruleset.chains[chain]


def test_names_are_valid_and_stable_whatever_the_feed_says() -> None:
    weird = service("we b;x", "10.96.0.10", {"name": 'p"{}', "port": 80}, ns="n" * 300)
    eps = endpoints("we b;x", ["10.244.0.5"], port_name='p"{}', ns="n" * 300)
    first = desired([weird], by_key(eps))
    assert first.chains and all(NFT_NAME.match(n) and len(n) <= 255 for n in first.chains)
    assert desired([weird], by_key(eps)) == first


A = service("a", "10.96.0.10")
B = service("b", "10.96.0.20", {"name": "http", "port": 80, "nodePort": 30080}, type_="NodePort")
A_SVC = chain_name(SERVICE_PREFIX, "default/a/tcp/http")


def a_ep(ip: str) -> str:
    return ep_chain(ip, base="default/a/tcp/http")


B_CHAINS = set(desired([B], by_key(endpoints("b", ["10.244.1.5"]))).chains)

DIFFS = [
    ("nothing changed", ["1", "2"], ["1", "2"], set(), set(), [], []),
    ("an endpoint added", ["1"], ["1", "2"], {A_SVC, a_ep("10.244.0.2")}, set(), [], []),
    ("an endpoint removed", ["1", "2"], ["1"], {A_SVC}, {a_ep("10.244.0.2")}, [], []),
    (
        "the last endpoint removed: reject instead",
        ["1"],
        [],
        set(),
        {A_SVC, a_ep("10.244.0.1")},
        [(SERVICE_IPS, "10.96.0.10 . tcp . 80")],
        [(NO_ENDPOINT_SERVICES, "10.96.0.10 . tcp . 80", REJECT)],
    ),
    (
        "the first endpoint: forward instead of reject",
        [],
        ["1"],
        {A_SVC, a_ep("10.244.0.1")},
        set(),
        [(NO_ENDPOINT_SERVICES, "10.96.0.10 . tcp . 80")],
        [(SERVICE_IPS, "10.96.0.10 . tcp . 80", f"goto {A_SVC}")],
    ),
]


@pytest.mark.parametrize(
    ("before", "after", "written", "stale", "deleted", "added"),
    [d[1:] for d in DIFFS],
    ids=[d[0] for d in DIFFS],
)
def test_a_change_of_one_services_endpoints_touches_that_service_only(
    before: list[str],
    after: list[str],
    written: set[str],
    stale: set[str],
    deleted: list[tuple[str, str]],
    added: list[tuple[str, str, str]],
) -> None:
    b_eps = endpoints("b", ["10.244.1.5"])

    def state(ips: list[str]) -> Ruleset:
        a_eps = [endpoints("a", [f"10.244.0.{i}" for i in ips])] if ips else []
        return desired([A, B], by_key(b_eps, *a_eps))

    changes = diff(state(before), state(after))
    assert set(changes.write_chains) == written
    assert set(changes.stale_chains) == stale
    assert list(changes.delete_elements) == deleted
    assert list(changes.add_elements) == added
    assert not (set(changes.write_chains) | set(changes.stale_chains)) & B_CHAINS
    assert bool(changes) == bool(written or stale or deleted or added)


def test_a_service_that_goes_leaves_its_chains_stale_and_its_elements_deleted() -> None:
    b_eps = endpoints("b", ["10.244.1.5"])
    changes = diff(desired([A, B], by_key(b_eps)), desired([A], by_key(b_eps)))
    assert set(changes.stale_chains) == B_CHAINS
    assert set(changes.delete_elements) == {
        (SERVICE_IPS, "10.96.0.20 . tcp . 80"),
        (SERVICE_NODEPORTS, "tcp . 30080"),
        (CLUSTER_IPS, "10.96.0.20"),
    }
    assert not changes.write_chains and not changes.add_elements


def test_a_new_affinity_timeout_makes_new_sets_and_drops_the_old() -> None:
    eps = by_key(endpoints("a", ["10.244.0.1"]))
    old = desired([service("a", "10.96.0.10", affinity=60)], eps)
    new = desired([service("a", "10.96.0.10", affinity=120)], eps)
    changes = diff(old, new)
    assert set(changes.delete_sets) == set(old.affinity_sets)
    assert dict(changes.add_sets) == dict(new.affinity_sets)
    assert set(changes.write_chains) == {A_SVC, a_ep("10.244.0.1")}
