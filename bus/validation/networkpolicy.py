"""Rules of NetworkPolicy, as Kubernetes' `ValidateNetworkPolicySpec` words them.

Every selector must be valid (an invalid one could select nothing, or everything, and the node
agents would enforce it); a peer names exactly one kind of source unless it combines a pod and a
namespace selector; an `ipBlock`'s exceptions lie strictly inside its CIDR; a port range exists
only for a numeric port and never ends before it starts. policyTypes are defaulted when the
object is decoded (`bus.resources.networking.NetworkPolicySpec`), so they are checked as given or
as defaulted.
"""

from __future__ import annotations

import ipaddress

from bus.errors import StatusCause
from bus.resources.networking import IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort
from bus.validation.rules import (
    forbidden,
    invalid_value,
    label_selector,
    port_name,
    port_number,
    required,
)
from bus.validation.schema import join

POLICY_TYPES = ("Ingress", "Egress")


def network_policy(policy: NetworkPolicy) -> list[StatusCause]:
    spec = policy.spec
    causes = label_selector("spec.podSelector", spec.pod_selector)
    for i, ingress in enumerate(spec.ingress):
        rule = f"spec.ingress[{i}]"
        causes += _ports(join(rule, "ports"), ingress.ports)
        causes += _peers(join(rule, "from"), ingress.from_)
    for i, egress in enumerate(spec.egress):
        rule = f"spec.egress[{i}]"
        causes += _ports(join(rule, "ports"), egress.ports)
        causes += _peers(join(rule, "to"), egress.to)
    if len(spec.policy_types) > len(POLICY_TYPES):
        causes.append(
            invalid_value("spec.policyTypes", spec.policy_types, "may not specify more than two policyTypes")
        )
    return causes


def _ports(path: str, ports: list[NetworkPolicyPort]) -> list[StatusCause]:
    causes: list[StatusCause] = []
    for i, port in enumerate(ports):
        causes += _port(f"{path}[{i}]", port)
    return causes


def _port(path: str, port: NetworkPolicyPort) -> list[StatusCause]:
    end_path = join(path, "endPort")
    if port.port is None:
        if port.end_port is None:
            return []
        return [invalid_value(end_path, port.end_port, "may not be specified when `port` is not specified")]
    if isinstance(port.port, str):
        causes = [invalid_value(join(path, "port"), port.port, m) for m in port_name(port.port)]
        if port.end_port is not None:
            causes.append(
                invalid_value(end_path, port.end_port, "may not be specified when `port` is non-numeric")
            )
        return causes
    causes = port_number(join(path, "port"), port.port)
    if port.end_port is not None:
        if port.end_port < port.port:
            causes.append(invalid_value(end_path, port.end_port, "must be greater than or equal to `port`"))
        causes += port_number(end_path, port.end_port)
    return causes


def _peers(path: str, peers: list[NetworkPolicyPeer]) -> list[StatusCause]:
    causes: list[StatusCause] = []
    for i, peer in enumerate(peers):
        causes += _peer(f"{path}[{i}]", peer)
    return causes


def _peer(path: str, peer: NetworkPolicyPeer) -> list[StatusCause]:
    causes: list[StatusCause] = []
    if peer.pod_selector is not None:
        causes += label_selector(join(path, "podSelector"), peer.pod_selector)
    if peer.namespace_selector is not None:
        causes += label_selector(join(path, "namespaceSelector"), peer.namespace_selector)
    if peer.ip_block is not None:
        causes += _ip_block(join(path, "ipBlock"), peer.ip_block)
    given = [s for s in (peer.pod_selector, peer.namespace_selector, peer.ip_block) if s is not None]
    if not given:
        causes.append(required(path, "must specify a peer"))
    elif len(given) > 1 and peer.ip_block is not None:
        causes.append(forbidden(path, "may not specify both ipBlock and another peer"))
    return causes


_CIDR_MESSAGE = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The network of a CIDR (host bits allowed, as Kubernetes parses it); None if it is not one."""
    if "/" not in value:
        return None
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


def _ip_block(path: str, block: IPBlock) -> list[StatusCause]:
    cidr_path = join(path, "cidr")
    if not block.cidr:
        return [required(cidr_path)]
    network = _network(block.cidr)
    if network is None:
        return [invalid_value(cidr_path, block.cidr, _CIDR_MESSAGE)]
    causes: list[StatusCause] = []
    for i, text in enumerate(block.except_):
        except_path = f"{join(path, 'except')}[{i}]"
        inner = _network(text)
        if inner is None:
            causes.append(invalid_value(except_path, text, _CIDR_MESSAGE))
            continue
        strict_subset = (
            inner.version == network.version
            and inner.prefixlen > network.prefixlen
            and inner.network_address in network
        )
        if not strict_subset:
            causes.append(invalid_value(except_path, text, "must be a strict subset of `cidr`"))
    return causes
