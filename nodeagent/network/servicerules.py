"""What the kernel should do with Service traffic on one node, and what changed since the last sync.

Pure logic, no I/O; `servicetable` turns the result into nft scripts. The layout is kube-proxy's
nftables mode, cut to what steersman's Services have:

- the map `service-ips` sends `ClusterIP . protocol . port` to the chain of that Service port;
- the map `service-nodeports` sends `protocol . port` to the port's `external-` chain, matched
  only on the node's address: every nodePort, and the Service port of a `type: LoadBalancer`
  Service (the node addresses are its load balancer, as k3s's ServiceLB does it);
- a Service port's `service-` chain picks one ready endpoint per new connection: in turn
  (`numgen inc mod N`, the default: sequential connections spread exactly evenly) or at random
  (`numgen random mod N`, kube-proxy's choice)
  and jumps to that endpoint's `endpoint-` chain, which DNATs to the pod's address and port;
- a Service port with no ready endpoint has elements in `no-endpoint-services` and
  `no-endpoint-nodeports` instead, which reject new connections (a TCP client is refused at
  once rather than left to time out);
- the map `cluster-ips` holds every ClusterIP, for what is left after DNAT: a connection to a
  ClusterIP on a port no Service serves is rejected, never routed off the node;
- session affinity ClientIP: one set per endpoint of the clients it served (with the Service's
  timeout); the service chain sends a client found in a set back to that endpoint.

Chains, sets and map elements are state to compare: a sync that finds only one Service's
endpoints changed rewrites that Service's chains and elements and nothing else. Chain names are
stable and valid nft identifiers: a hash of the full name and a readable part, as kube-proxy's.

Objects are taken from what the cluster feeds the agent, so nothing is trusted: a clusterIP that
is not an IPv4 address (headless `None` included) gets nothing; ports outside 1-65535 and
endpoint addresses that are not IPv4 addresses are left out; two Services wanting one key (a
nodePort, say) get it in order of age, oldest first.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from bus.resources import Endpoints, Service
from bus.resources.networking import ServicePort

Key = tuple[str, str]  # (namespace, name)

SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
CLUSTER_IPS = "cluster-ips"
MAPS = (SERVICE_IPS, SERVICE_NODEPORTS, NO_ENDPOINT_SERVICES, NO_ENDPOINT_NODEPORTS, CLUSTER_IPS)

REJECT_CHAIN = "reject-chain"
MARK_MASQ_CHAIN = "mark-for-masquerade"

SERVICE_PREFIX = "service-"
EXTERNAL_PREFIX = "external-"
ENDPOINT_PREFIX = "endpoint-"
AFFINITY_PREFIX = "affinity-"
CHAIN_PREFIXES = (SERVICE_PREFIX, EXTERNAL_PREFIX, ENDPOINT_PREFIX)

DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds, Kubernetes' default for ClientIP affinity
MAX_AFFINITY_TIMEOUT = 86400  # Kubernetes' bound
_NAME_MAX = 200  # nft allows 255; room for a prefix
_UNSAFE = re.compile(r"[^A-Za-z0-9_./\-]")  # what an nft name may hold (it starts with our prefix)


@dataclass(frozen=True)
class Ruleset:
    """The per-Service objects of the table: regular chains (name: rules), the elements of
    each map (key: verdict), and the affinity sets (name: timeout in seconds)."""

    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    elements: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    affinity_sets: Mapping[str, int] = field(default_factory=dict)

    def element_items(self) -> set[tuple[str, str, str]]:
        return {(m, key, verdict) for m, items in self.elements.items() for key, verdict in items.items()}


@dataclass(frozen=True)
class Changes:
    """What a partial sync does, in the order it is applied."""

    add_sets: Mapping[str, int] = field(default_factory=dict)
    write_chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # created or rewritten
    delete_elements: tuple[tuple[str, str], ...] = ()  # (map, key)
    add_elements: tuple[tuple[str, str, str], ...] = ()  # (map, key, verdict)
    stale_chains: tuple[str, ...] = ()  # flushed now, deleted once nothing can refer to them
    delete_sets: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return any(
            (
                self.add_sets,
                self.write_chains,
                self.delete_elements,
                self.add_elements,
                self.stale_chains,
                self.delete_sets,
            )
        )


Balancing = Literal["round-robin", "random"]
NUMGEN: dict[str, str] = {"round-robin": "inc", "random": "random"}


def desired(
    services: Iterable[Service], endpoints: Mapping[Key, Endpoints], *, balancing: Balancing = "round-robin"
) -> Ruleset:
    """The chains, map elements and sets that serve these Services."""
    chains: dict[str, tuple[str, ...]] = {}
    elements: dict[str, dict[str, str]] = {name: {} for name in MAPS}
    sets: dict[str, int] = {}
    taken_ips: set[str] = set()
    taken_nodeports: set[str] = set()
    for service in sorted(services, key=_age):
        cluster_ip = ipv4(service.spec.cluster_ip)
        if cluster_ip is None:  # headless, or not an address we can serve
            continue
        ns, name = service.metadata.namespace, service.metadata.name
        elements[CLUSTER_IPS][cluster_ip] = f"goto {REJECT_CHAIN}"
        timeout = affinity_timeout(service)
        for port in service.spec.ports:
            if not valid_port(port.port):
                continue
            proto = port.protocol.lower()
            base = f"{ns}/{name}/{proto}/{port.name}"
            service_chain = chain_name(SERVICE_PREFIX, base)
            if service_chain in chains:  # two ports with one name: the first one only
                continue
            ip_key = f"{cluster_ip} . {proto} . {port.port}"
            if ip_key in taken_ips:  # another Service's address: the API should have refused it
                ip_key = ""
            taken_ips.add(ip_key)
            external = [k for k in external_keys(service, port) if k not in taken_nodeports]
            taken_nodeports.update(external)
            ready = ready_endpoints(port, endpoints.get((ns, name)))
            if not ready:
                if ip_key:
                    elements[NO_ENDPOINT_SERVICES][ip_key] = f"goto {REJECT_CHAIN}"
                for key in external:
                    elements[NO_ENDPOINT_NODEPORTS][key] = f"goto {REJECT_CHAIN}"
                continue
            picks: list[tuple[str, str]] = []  # (endpoint chain, its affinity set or "")
            for ip, target in ready:
                endpoint = f"{base}__{ip}/{target}"
                affinity = chain_name(AFFINITY_PREFIX, endpoint, salt=str(timeout)) if timeout else ""
                chain = chain_name(ENDPOINT_PREFIX, endpoint)
                chains[chain] = endpoint_rules(ip, target, proto, affinity)
                if affinity:
                    sets[affinity] = timeout
                picks.append((chain, affinity))
            chains[service_chain] = service_rules(picks, balancing)
            if ip_key:
                elements[SERVICE_IPS][ip_key] = f"goto {service_chain}"
            if external:
                external_chain = chain_name(EXTERNAL_PREFIX, base)
                chains[external_chain] = (f"jump {MARK_MASQ_CHAIN}", f"goto {service_chain}")
                for key in external:
                    elements[SERVICE_NODEPORTS][key] = f"goto {external_chain}"
    return Ruleset(chains=chains, elements=elements, affinity_sets=sets)


def diff(old: Ruleset, new: Ruleset) -> Changes:
    """The changes that take a table holding `old` to `new`."""
    old_items, new_items = old.element_items(), new.element_items()
    gone = {(m, key) for m, key, _ in old_items - new_items}
    return Changes(
        add_sets={name: t for name, t in new.affinity_sets.items() if name not in old.affinity_sets},
        write_chains={name: rules for name, rules in new.chains.items() if old.chains.get(name) != rules},
        delete_elements=tuple(sorted(gone)),
        add_elements=tuple(sorted(new_items - old_items)),
        stale_chains=tuple(sorted(set(old.chains) - set(new.chains))),
        delete_sets=tuple(sorted(set(old.affinity_sets) - set(new.affinity_sets))),
    )


def service_rules(picks: list[tuple[str, str]], balancing: Balancing = "round-robin") -> tuple[str, ...]:
    """A Service port's chain: back to a client's endpoint if affinity remembers one, else one
    ready endpoint, in turn or at random."""
    sticky = [f"ip saddr @{affinity} goto {chain}" for chain, affinity in picks if affinity]
    choices = ", ".join(f"{i} : goto {chain}" for i, (chain, _) in enumerate(picks))
    return (*sticky, f"numgen {NUMGEN[balancing]} mod {len(picks)} vmap {{ {choices} }}")


def endpoint_rules(ip: str, port: int, proto: str, affinity: str) -> tuple[str, ...]:
    """An endpoint's chain: masquerade a pod reaching itself (hairpin: without it the pod would
    answer its own address straight back and the reply would not be un-DNATed), remember the
    client for affinity, DNAT."""
    remember = (f"update @{affinity} {{ ip saddr }}",) if affinity else ()
    return (f"ip saddr {ip} jump {MARK_MASQ_CHAIN}", *remember, f"meta l4proto {proto} dnat to {ip}:{port}")


def ready_endpoints(port: ServicePort, endpoints: Endpoints | None) -> list[tuple[str, int]]:
    """The ready (address, port) pairs of one Service port, in address order."""
    found: set[tuple[str, int]] = set()
    for subset in endpoints.subsets if endpoints is not None else ():
        for endpoint_port in subset.ports:
            if endpoint_port.name != port.name or endpoint_port.protocol != port.protocol:
                continue
            if not valid_port(endpoint_port.port):
                continue
            for address in subset.addresses:
                ip = ipv4(address.ip)
                if ip is not None:
                    found.add((ip, endpoint_port.port))
    return sorted(found, key=lambda pair: (ipaddress.IPv4Address(pair[0]), pair[1]))


def external_keys(service: Service, port: ServicePort) -> list[str]:
    """The `service-nodeports` keys of one Service port: its nodePort, and for a LoadBalancer
    its own port (on the node's address)."""
    proto = port.protocol.lower()
    numbers: list[int] = []
    if service.spec.type in ("NodePort", "LoadBalancer") and port.node_port is not None:
        numbers.append(port.node_port)
    if service.spec.type == "LoadBalancer":
        numbers.append(port.port)
    return [f"{proto} . {n}" for n in dict.fromkeys(numbers) if valid_port(n)]


def affinity_timeout(service: Service) -> int:
    """Seconds a ClientIP affinity lasts; 0 for no affinity."""
    if service.spec.session_affinity != "ClientIP":
        return 0
    config = service.spec.session_affinity_config
    seconds = config.client_ip.timeout_seconds if config and config.client_ip else None
    if seconds is None or not 0 < seconds <= MAX_AFFINITY_TIMEOUT:
        return DEFAULT_AFFINITY_TIMEOUT
    return seconds


def chain_name(prefix: str, name: str, *, salt: str = "") -> str:
    """`<prefix><hash>-<name>`: the hash keeps names unique (even truncated), the rest readable."""
    digest = hashlib.sha256(f"{name}{salt}".encode()).digest()
    full = f"{prefix}{base64.b32encode(digest).decode()[:8]}-{_UNSAFE.sub('_', name)}"
    return full if len(full) <= _NAME_MAX else full[: _NAME_MAX - 3] + "..."


def is_owned_chain(name: str) -> bool:
    return name.startswith(CHAIN_PREFIXES) and "/" in name


def is_owned_set(name: str) -> bool:
    return name.startswith(AFFINITY_PREFIX) and "/" in name


def ipv4(text: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def valid_port(number: int | None) -> bool:
    return number is not None and 1 <= number <= 65535


def _age(service: Service) -> tuple[str, str, str]:
    meta = service.metadata
    created = meta.creation_timestamp.isoformat() if meta.creation_timestamp else ""
    return created, meta.namespace, meta.name
