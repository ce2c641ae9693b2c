"""The nft scripts that program Service forwarding into a node's table: a full sync and a partial one.

Pure logic, no I/O. Each script is one nft transaction.

The fixed part (the skeleton) hooks into netfilter as kube-proxy's nftables mode does:

- `nat-prerouting` (dstnat) for packets arriving from pods and other hosts, `nat-output` (dstnat)
  for the node's own processes reaching a ClusterIP or a nodePort: both jump to `services`,
  which looks the destination up in `service-ips`, and, for the node's address only, the
  protocol and port in `service-nodeports`;
- `nat-postrouting` (srcnat) jumps to `masquerading`: packets marked by `mark-for-masquerade`
  (a pod reaching itself through its Service; traffic that came in on a nodePort, whose reply
  must come back through this node to be un-NATed) are masqueraded, and so are DNATed packets
  from 127.0.0.0/8 (a nodePort dialled on a loopback node address, as in `steer up`): a pod
  could not answer a loopback source;
- `filter-prerouting` and `filter-output` (before DNAT) send new connections to a Service port
  without endpoints to `reject-chain` (ICMP port unreachable: a TCP client is refused at once).
  Rejecting in prerouting needs Linux 5.9 or later; it works whether or not the node has a
  route for the ClusterIP;
- `filter-forward` and `filter-output-post-dnat` (after DNAT) send new connections still
  addressed to a ClusterIP (a port no Service serves: nothing DNATed them) to `cluster-ips-check`,
  which rejects them, so they are never routed off the node (kube-proxy's `cluster-ips` check).

A full sync (the first, one after any failure, and periodically) writes the skeleton and every
Service object afresh and clears the maps; a partial sync writes only `Changes`. Chains that are
no longer wanted are flushed at once and deleted by a later transaction: before Linux 6.2 the
kernel may still count a reference from a just-deleted map element for a moment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nodeagent.network.nft import Table
from nodeagent.network.servicerules import (
    CLUSTER_IPS,
    MARK_MASQ_CHAIN,
    NO_ENDPOINT_NODEPORTS,
    NO_ENDPOINT_SERVICES,
    REJECT_CHAIN,
    SERVICE_IPS,
    SERVICE_NODEPORTS,
    Changes,
    Ruleset,
    ipv4,
    is_owned_chain,
    is_owned_set,
)

MASQUERADE_MARK = "0x4000"  # kube-proxy's default bit (14)
SERVICES_CHAIN = "services"
MASQUERADING_CHAIN = "masquerading"
ENDPOINTS_CHECK_CHAIN = "endpoints-check"
CLUSTER_IPS_CHECK_CHAIN = "cluster-ips-check"

# name, type, hook, priority. nft takes `dstnat` (-100) only on prerouting, hence the numbers.
BASE_CHAINS = (
    ("filter-prerouting", "filter", "prerouting", "-110"),
    ("filter-output", "filter", "output", "-110"),
    ("nat-prerouting", "nat", "prerouting", "-100"),
    ("nat-output", "nat", "output", "-100"),
    ("nat-postrouting", "nat", "postrouting", "100"),
    ("filter-forward", "filter", "forward", "-110"),
    ("filter-output-post-dnat", "filter", "output", "-90"),
)
FIXED_CHAINS = (
    SERVICES_CHAIN,
    MASQUERADING_CHAIN,
    MARK_MASQ_CHAIN,
    ENDPOINTS_CHECK_CHAIN,
    CLUSTER_IPS_CHECK_CHAIN,
    REJECT_CHAIN,
)
MAP_TYPES = {
    SERVICE_IPS: ("ipv4_addr . inet_proto . inet_service : verdict", "ClusterIP traffic"),
    SERVICE_NODEPORTS: ("inet_proto . inet_service : verdict", "NodePort and LoadBalancer traffic"),
    NO_ENDPOINT_SERVICES: ("ipv4_addr . inet_proto . inet_service : verdict", "Services without endpoints"),
    NO_ENDPOINT_NODEPORTS: ("inet_proto . inet_service : verdict", "nodePorts without endpoints"),
    CLUSTER_IPS: ("ipv4_addr : verdict", "every ClusterIP, for ports no Service serves"),
}


def skeleton(table: Table, node_address: str, cluster_cidr: str = "") -> list[str]:
    """The fixed objects, created or emptied, with their rules; the maps emptied. Connections to
    a Service from outside `cluster_cidr` (the node's own processes, other hosts) are
    masqueraded, as kube-proxy's `--cluster-cidr` has it: a pod routes only cluster addresses
    back through its node, so it could not answer them."""
    lines = [f'add table {table} {{ comment "{table.comment}" ; }}']
    for name, kind, hook, priority in BASE_CHAINS:
        lines.append(f"add chain {table} {name} {{ type {kind} hook {hook} priority {priority} ; }}")
        lines.append(f"flush chain {table} {name}")
    for name in FIXED_CHAINS:
        lines += [f"add chain {table} {name}", f"flush chain {table} {name}"]
    for name, (kind, comment) in MAP_TYPES.items():
        lines.append(f'add map {table} {name} {{ type {kind} ; comment "{comment}" ; }}')
        lines.append(f"flush map {table} {name}")
    node = ipv4(node_address)
    off_cluster = [(MASQUERADING_CHAIN, f"ip saddr != {cluster_cidr} ct status dnat masquerade")]
    if not cluster_cidr:
        off_cluster = []
    rules = [
        ("nat-prerouting", f"jump {SERVICES_CHAIN}"),
        ("nat-output", f"jump {SERVICES_CHAIN}"),
        ("nat-postrouting", f"jump {MASQUERADING_CHAIN}"),
        ("filter-prerouting", f"ct state new jump {ENDPOINTS_CHECK_CHAIN}"),
        ("filter-output", f"ct state new jump {ENDPOINTS_CHECK_CHAIN}"),
        ("filter-forward", f"ct state new jump {CLUSTER_IPS_CHECK_CHAIN}"),
        ("filter-output-post-dnat", f"ct state new jump {CLUSTER_IPS_CHECK_CHAIN}"),
        (CLUSTER_IPS_CHECK_CHAIN, f"ip daddr vmap @{CLUSTER_IPS}"),
        (SERVICES_CHAIN, f"ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"),
        (ENDPOINTS_CHECK_CHAIN, f"ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"),
        (REJECT_CHAIN, "reject"),
        (MARK_MASQ_CHAIN, f"meta mark set meta mark or {MASQUERADE_MARK}"),
        (MASQUERADING_CHAIN, "ip saddr 127.0.0.0/8 ip daddr != 127.0.0.0/8 ct status dnat masquerade"),
        *off_cluster,
        (MASQUERADING_CHAIN, f"meta mark & {MASQUERADE_MARK} == 0 return"),
        (MASQUERADING_CHAIN, f"meta mark set meta mark xor {MASQUERADE_MARK}"),
        (MASQUERADING_CHAIN, "masquerade fully-random"),
    ]
    if node is not None:
        rules += [
            (SERVICES_CHAIN, f"ip daddr {node} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"),
            (ENDPOINTS_CHECK_CHAIN, f"ip daddr {node} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"),
        ]
    lines += [f"add rule {table} {chain} {rule}" for chain, rule in rules]
    return lines


def full_script(
    table: Table,
    node_address: str,
    ruleset: Ruleset,
    *,
    existing_chains: Iterable[str] = (),
    existing_sets: Iterable[str] = (),
    cluster_cidr: str = "",
) -> tuple[str, tuple[str, ...]]:
    """The whole Service part of the table rewritten; and the chains it leaves stale (ours, found
    in the table, no longer wanted: flushed, to be deleted later)."""
    stale = tuple(sorted({c for c in existing_chains if is_owned_chain(c)} - set(ruleset.chains)))
    gone_sets = tuple(sorted({s for s in existing_sets if is_owned_set(s)} - set(ruleset.affinity_sets)))
    lines = skeleton(table, node_address, cluster_cidr)
    lines += _sets(table, ruleset.affinity_sets)
    lines += _chains(table, ruleset.chains)
    lines += _elements(table, "add", sorted(ruleset.element_items()))
    lines += [f"flush chain {table} {name}" for name in stale]
    lines += [f"delete set {table} {name}" for name in gone_sets]
    return _script(lines), stale


def partial_script(table: Table, changes: Changes) -> str:
    """Only what changed, in an order nft accepts: sets before the rules that use them, chains
    before the elements that point at them, deletions of sets after the rules that used them."""
    lines = _sets(table, changes.add_sets)
    lines += _chains(table, changes.write_chains)
    lines += _elements(table, "delete", [(m, key, "") for m, key in changes.delete_elements])
    lines += _elements(table, "add", changes.add_elements)
    lines += [f"flush chain {table} {name}" for name in changes.stale_chains]
    lines += [f"delete set {table} {name}" for name in changes.delete_sets]
    return _script(lines)


def delete_chains_script(table: Table, chains: Iterable[str]) -> str:
    return _script([f"delete chain {table} {name}" for name in sorted(chains)])


def _sets(table: Table, sets: Mapping[str, int]) -> list[str]:
    return [
        f"add set {table} {name} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}"
        for name, timeout in sorted(sets.items())
    ]


def _chains(table: Table, chains: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Every chain exists before any rule jumps to one; each is emptied, then filled."""
    names = sorted(chains)
    lines = [f"add chain {table} {name}" for name in names]
    for name in names:
        lines.append(f"flush chain {table} {name}")
        lines += [f"add rule {table} {name} {rule}" for rule in chains[name]]
    return lines


def _elements(table: Table, verb: str, items: Iterable[tuple[str, str, str]]) -> list[str]:
    by_map: dict[str, list[str]] = {}
    for name, key, verdict in items:
        by_map.setdefault(name, []).append(f"{key} : {verdict}" if verdict else key)
    return [f"{verb} element {table} {name} {{ {', '.join(keys)} }}" for name, keys in sorted(by_map.items())]


def _script(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)
