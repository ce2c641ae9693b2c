"""NetworkPolicy as nftables rules in a node's table: pure, from the objects to an nft script.

Every packet between pods crosses the node's namespace (pods have /32 addresses and route
through the gateway, docs/networking.md), so a chain on the forward hook sees all of it, after
Service DNAT (so it sees the pod address and container port a connection really reaches). A
node enforces what concerns its own pods (addresses in its pod CIDR): ingress to them, egress
from them. The node that hosts the other end enforces the other direction.

Kubernetes' semantics, one chain per governed pod and direction:

- a pod no policy of a type selects is not governed for that type: no chain, everything passes;
- a governed pod's chain holds the union of every rule of every policy selecting it: a rule
  that matches `return`s (allowed), and the chain ends in a `drop`;
- ingress and egress are separate checks: the forward chain jumps to the source's egress chain,
  then to the destination's ingress chain, so a connection between two governed pods needs both;
- `ct state established,related accept` comes first, so replies of allowed connections pass
  (and connections opened before a policy came keep going, as with conntrack-based plugins).

A pod's traffic to the node's own addresses (its DNS server on the gateway) is INPUT, not
FORWARD: an input-hook chain sends governed pods' packets through the same egress chains.

Peer addresses go into named sets, one per policy rule, shared by every pod the policy selects.
Named ports are resolved per destination pod: on the pod itself for ingress; for egress into a
set of `address . protocol . port` triples over the peers' pods.

Objects are named `netpol-...` so the script can replace exactly ours in a table we share with
the Service chains: `script` flushes and refills our chains and sets in one transaction, and
deletes those of ours (from the last apply, or from a listing of the table) no longer wanted.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bus.meta import LabelSelector
from bus.resources import Namespace, NetworkPolicy, Pod
from bus.resources.networking import NetworkPolicyPeer, NetworkPolicyPort
from bus.selectors import Selector, from_label_selector, matches

PREFIX = "netpol-"
FORWARD_CHAIN = "netpol-forward"
INPUT_CHAIN = "netpol-input"
BASE_CHAINS = {
    FORWARD_CHAIN: "type filter hook forward priority filter; policy accept;",
    INPUT_CHAIN: "type filter hook input priority filter; policy accept;",
}
# The label Kubernetes puts on every namespace; selectors may use it whether or not we stored it.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
ADDRESSES = "ipv4_addr"
TRIPLES = "ipv4_addr . inet_proto . inet_service"
_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
_TERMINAL = ("Succeeded", "Failed")

Network = ipaddress.IPv4Network


def _digest(text: str, size: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def table_name(node: str) -> str:
    """The node's table: `steer_<8 hex of sha256(node name)>` (docs/networking.md)."""
    return f"steer_{_digest(node, 8)}"


@dataclass(frozen=True, eq=False)
class PodView:
    """What policies need of a pod."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    ip: ipaddress.IPv4Address
    node: str
    ports: tuple[tuple[str, str, int], ...]  # (name, protocol, number) of named container ports

    def named_port(self, name: str, protocol: str) -> int | None:
        return next((n for pname, proto, n in self.ports if pname == name and proto == protocol), None)


def pod_view(pod: Pod) -> PodView | None:
    """The pod as policies see it; None while it has no IPv4 address or once it has ended."""
    if pod.status.phase in _TERMINAL or not pod.status.pod_ip:
        return None
    try:
        ip = ipaddress.IPv4Address(pod.status.pod_ip)
    except ValueError:
        return None
    ports = tuple(
        (port.name, port.protocol, port.container_port)
        for container in pod.spec.containers
        for port in container.ports
        if port.name
    )
    meta = pod.metadata
    return PodView(meta.namespace, meta.name, meta.labels, ip, pod.spec.node_name, ports)


@dataclass(frozen=True)
class NftSet:
    type: str
    elements: tuple[str, ...]

    @property
    def interval(self) -> bool:
        return self.type == ADDRESSES


@dataclass
class Ruleset:
    """Our chains (base and regular) with their rules, and our named sets."""

    chains: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in BASE_CHAINS})
    sets: dict[str, NftSet] = field(default_factory=dict)


@dataclass(frozen=True)
class Owned:
    """Names of the chains and sets of ours that a table holds."""

    chains: frozenset[str] = frozenset()
    sets: frozenset[str] = frozenset()

    @classmethod
    def of(cls, ruleset: Ruleset) -> Owned:
        return cls(frozenset(ruleset.chains), frozenset(ruleset.sets))


def owned(listing: str) -> Owned:
    """Ours among the objects of `nft -j list table ...` output ("" for a missing table)."""
    if not listing.strip():
        return Owned()
    chains: set[str] = set()
    sets: set[str] = set()
    for item in json.loads(listing).get("nftables", []):
        for kind, names in (("chain", chains), ("set", sets)):
            name = item.get(kind, {}).get("name", "")
            if name.startswith(PREFIX):
                names.add(name)
    return Owned(frozenset(chains), frozenset(sets))


# -- from objects to rules


def rules(
    policies: Iterable[NetworkPolicy],
    pods: Iterable[Pod],
    namespaces: Iterable[Namespace],
    *,
    node: str,
    pod_cidr: str,
) -> Ruleset:
    cidr = ipaddress.IPv4Network(pod_cidr, strict=False)
    views = sorted((v for pod in pods if (v := pod_view(pod))), key=lambda v: (v.namespace, v.name))
    labels = {ns.metadata.name: ns.metadata.labels for ns in namespaces}
    local = [v for v in views if v.node == node and v.ip in cidr]
    builder = _Builder(views, labels)
    governed: dict[str, dict[PodView, list[NetworkPolicy]]] = {"Ingress": {}, "Egress": {}}
    for policy in sorted(policies, key=lambda p: (p.metadata.namespace, p.metadata.name)):
        selector = _selector(policy.spec.pod_selector)
        if selector is None:
            continue
        for pod in local:
            if pod.namespace == policy.metadata.namespace and matches(selector, pod.labels):
                for policy_type in dict.fromkeys(policy.spec.policy_types):
                    governed[policy_type].setdefault(pod, []).append(policy)
    ruleset = builder.ruleset
    verdicts: dict[str, dict[str, str]] = {"Ingress": {}, "Egress": {}}
    for kind, pods_of in governed.items():
        for pod, selecting in pods_of.items():
            if str(pod.ip) in verdicts[kind]:
                continue  # two pods claim one address: the first (by name) keeps it
            direction = "in" if kind == "Ingress" else "eg"
            chain = f"{PREFIX}{direction}-{_digest(f'{pod.namespace}/{pod.name}', 12)}"
            make = builder.ingress_chain if kind == "Ingress" else builder.egress_chain
            ruleset.chains[chain] = make(pod, selecting)
            verdicts[kind][str(pod.ip)] = chain
    established = "ct state established,related accept"
    ruleset.chains[FORWARD_CHAIN] = [established]
    ruleset.chains[INPUT_CHAIN] = [established]
    if verdicts["Egress"]:  # egress first: a connection between governed pods needs both
        ruleset.chains[FORWARD_CHAIN].append(f"ip saddr vmap {_vmap(verdicts['Egress'])}")
        ruleset.chains[INPUT_CHAIN].append(f"ip saddr vmap {_vmap(verdicts['Egress'])}")
    if verdicts["Ingress"]:
        ruleset.chains[FORWARD_CHAIN].append(f"ip daddr vmap {_vmap(verdicts['Ingress'])}")
    return ruleset


def _policy_base(policy: NetworkPolicy) -> str:
    """The start of the names of a policy's sets (`netpol-<10 hex>`), stable while it exists."""
    return f"{PREFIX}{_digest(f'{policy.metadata.namespace}/{policy.metadata.name}', 10)}"


def _vmap(verdicts: dict[str, str]) -> str:
    return "{ " + ", ".join(f"{ip} : jump {chain}" for ip, chain in sorted(verdicts.items())) + " }"


def _selector(selector: LabelSelector) -> Selector | None:
    """A stored selector is valid; one that is not selects nothing rather than everything."""
    try:
        return from_label_selector(selector)
    except ValueError:
        return None


class _Builder:
    def __init__(self, pods: list[PodView], namespace_labels: Mapping[str, Mapping[str, str]]) -> None:
        self.pods = pods
        self.namespace_labels = namespace_labels
        self.ruleset = Ruleset()

    def ingress_chain(self, pod: PodView, policies: list[NetworkPolicy]) -> list[str]:
        out = [f"ip saddr {pod.ip} return"]  # a pod always reaches itself (through a Service)
        for policy in policies:
            base = _policy_base(policy)
            for i, rule in enumerate(policy.spec.ingress):
                source = self._addresses(f"{base}-in{i}", rule.from_, policy.metadata.namespace)
                if source is None:
                    continue  # peers that are nobody: the rule allows nothing
                match = f"ip saddr @{source} " if source else ""
                numbers = [p for p in rule.ports if not isinstance(p.port, str)]
                for port in rule.ports:
                    if isinstance(port.port, str) and (n := pod.named_port(port.port, port.protocol)):
                        numbers.append(NetworkPolicyPort(protocol=port.protocol, port=n))
                if rule.ports and not numbers:
                    continue  # only named ports this pod does not have
                out += [f"{match}{m}return" for m in _port_matches(numbers)]
        return [*out, "counter drop"]

    def egress_chain(self, pod: PodView, policies: list[NetworkPolicy]) -> list[str]:
        out = [f"ip daddr {pod.ip} return"]
        for policy in policies:
            namespace = policy.metadata.namespace
            base = _policy_base(policy)
            for i, rule in enumerate(policy.spec.egress):
                target = self._addresses(f"{base}-eg{i}", rule.to, namespace)
                if target is None:
                    continue
                match = f"ip daddr @{target} " if target else ""
                numbers = [p for p in rule.ports if not isinstance(p.port, str)]
                if numbers or not rule.ports:
                    out += [f"{match}{m}return" for m in _port_matches(numbers)]
                named = [p for p in rule.ports if isinstance(p.port, str)]
                if named and (triples := self._triples(f"{base}-eg{i}-np", rule.to, namespace, named)):
                    out.append(f"ip daddr . meta l4proto . th dport @{triples} return")
        return [*out, "counter drop"]

    def _addresses(self, name: str, peers: list[NetworkPolicyPeer], namespace: str) -> str | None:
        """The named set of the peers' addresses: "" for no peers (everyone), None for nobody."""
        if not peers:
            return ""
        networks = [Network(f"{pod.ip}/32") for pod in self._peer_pods(peers, namespace)]
        for peer in peers:
            if peer.ip_block is not None:
                networks += _block(peer.ip_block.cidr, peer.ip_block.except_)
        if not networks:
            return None
        self.ruleset.sets[name] = NftSet(ADDRESSES, _intervals(networks))
        return name

    def _triples(
        self, name: str, peers: list[NetworkPolicyPeer], namespace: str, ports: list[NetworkPolicyPort]
    ) -> str | None:
        """Named ports of egress resolved on each destination pod among the peers."""
        if peers:
            pods = set(self._peer_pods(peers, namespace))
            blocks = [n for p in peers if p.ip_block for n in _block(p.ip_block.cidr, p.ip_block.except_)]
            pods |= {pod for pod in self.pods if any(pod.ip in net for net in blocks)}
        else:
            pods = set(self.pods)
        elements = {
            f"{pod.ip} . {_PROTOCOLS[port.protocol]} . {number}"
            for pod in pods
            for port in ports
            if isinstance(port.port, str) and (number := pod.named_port(port.port, port.protocol))
        }
        if not elements:
            return None
        self.ruleset.sets[name] = NftSet(TRIPLES, tuple(sorted(elements)))
        return name

    def _peer_pods(self, peers: list[NetworkPolicyPeer], namespace: str) -> list[PodView]:
        """Pods chosen by the selector peers: podSelector in the policy's namespace, or in the
        namespaces namespaceSelector chooses; namespaceSelector alone: every pod there."""
        chosen: list[PodView] = []
        for peer in peers:
            if peer.ip_block is not None:
                continue
            pod_selector = _selector(peer.pod_selector) if peer.pod_selector is not None else ()
            namespace_selector = (
                _selector(peer.namespace_selector) if peer.namespace_selector is not None else None
            )
            if pod_selector is None:
                continue
            for pod in self.pods:
                if peer.namespace_selector is None:
                    in_namespace = pod.namespace == namespace
                else:
                    labels = {**self.namespace_labels.get(pod.namespace, {})}
                    labels[NAMESPACE_NAME_LABEL] = pod.namespace
                    in_namespace = namespace_selector is not None and matches(namespace_selector, labels)
                if in_namespace and matches(pod_selector, pod.labels):
                    chosen.append(pod)
        return chosen


def _block(cidr: str, excepts: Iterable[str]) -> list[Network]:
    """An ipBlock's IPv4 addresses as networks: `cidr` with the `except` ranges cut out."""
    try:
        whole = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return []
    if not isinstance(whole, Network):
        return []  # IPv6: no such traffic in an IPv4 pod network
    kept = [whole]
    for text in excepts:
        try:
            cut = ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue
        if not isinstance(cut, Network):
            continue
        next_kept: list[Network] = []
        for net in kept:
            if cut.subnet_of(net):
                next_kept += net.address_exclude(cut)
            elif not net.subnet_of(cut):
                next_kept.append(net)
        kept = next_kept
    return kept


def _intervals(networks: Iterable[Network]) -> tuple[str, ...]:
    """Set elements covering `networks`, as few as there are separate ranges: an address, a
    prefix, or `first-last` (an ipBlock with exceptions is a few ranges, not dozens of prefixes)."""
    spans: list[tuple[int, int]] = []
    for net in ipaddress.collapse_addresses(networks):
        low, high = int(net.network_address), int(net.broadcast_address)
        if spans and low == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], high)
        else:
            spans.append((low, high))
    elements = []
    for low, high in spans:
        first, last = ipaddress.IPv4Address(low), ipaddress.IPv4Address(high)
        prefixes = list(ipaddress.summarize_address_range(first, last))
        if low == high:
            elements.append(str(first))
        elif len(prefixes) == 1:
            elements.append(str(prefixes[0]))
        else:
            elements.append(f"{first}-{last}")
    return tuple(elements)


def _port_matches(ports: list[NetworkPolicyPort]) -> list[str]:
    """Match expressions (each ending in a space) for numeric ports, grouped by protocol; [""]
    (everything) when there are none."""
    if not ports:
        return [""]
    everything: set[str] = set()
    ranges: dict[str, set[tuple[int, int]]] = {}
    for port in ports:
        proto = _PROTOCOLS[port.protocol]
        if port.port is None:
            everything.add(proto)
        else:
            assert isinstance(port.port, int)
            ranges.setdefault(proto, set()).add((port.port, max(port.end_port or port.port, port.port)))
    out = [f"meta l4proto {proto} " for proto in sorted(everything)]
    for proto, spans in sorted(ranges.items()):
        if proto in everything:
            continue
        items = [str(a) if a == b else f"{a}-{b}" for a, b in _merged(spans)]
        values = items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"
        out.append(f"{proto} dport {values} ")
    return out


def _merged(spans: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching ranges joined (an anonymous interval set refuses overlaps)."""
    merged: list[tuple[int, int]] = []
    for low, high in sorted(spans):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


# -- the script


def base_chains(table: str) -> str:
    """The table and our base chains, declared (idempotent: `add` leaves existing ones be)."""
    lines = [f"add table ip {table}"]
    lines += [f"add chain ip {table} {name} {{ {spec} }}" for name, spec in BASE_CHAINS.items()]
    return "\n".join(lines) + "\n"


def script(ruleset: Ruleset, *, table: str, previous: Owned = Owned()) -> str:
    """One nft transaction making our objects in `table` be `ruleset`, touching nothing else:
    every chain of ours is flushed first (so no rule refers to what goes), stale chains and
    sets of ours are deleted, then sets and rules are written afresh."""
    lines = [base_chains(table).rstrip("\n")]
    regular = sorted(name for name in ruleset.chains if name not in BASE_CHAINS)
    stale_chains = sorted(previous.chains - set(ruleset.chains) - set(BASE_CHAINS))
    lines += [f"add chain ip {table} {name}" for name in regular]
    lines += [f"flush chain ip {table} {name}" for name in [*BASE_CHAINS, *regular, *stale_chains]]
    lines += [f"delete chain ip {table} {name}" for name in stale_chains]
    lines += [f"delete set ip {table} {name}" for name in sorted(previous.sets - set(ruleset.sets))]
    for name, nft_set in sorted(ruleset.sets.items()):
        flags = " flags interval;" if nft_set.interval else ""
        lines.append(f"add set ip {table} {name} {{ type {nft_set.type};{flags} }}")
        lines.append(f"flush set ip {table} {name}")
        if nft_set.elements:
            lines.append(f"add element ip {table} {name} {{ {', '.join(nft_set.elements)} }}")
    for name in [*BASE_CHAINS, *regular]:
        lines += [f"add rule ip {table} {name} {rule}" for rule in ruleset.chains[name]]
    return "\n".join(lines) + "\n"
