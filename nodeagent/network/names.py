"""The names of what the agent creates in the kernel, derived from what they belong to.

Linux interface names are at most 15 bytes, so they carry a hash, not the node or pod name.
Every name has a prefix of its own, so that a clean-up finds the agent's objects (and only
them) even when nothing else remembers them.
"""

from __future__ import annotations

import hashlib

BRIDGE_PREFIX = "steer"  # steer<8 hex>: the node's bridge
VETH_PREFIX = "sv"  # sv<12 hex>: a pod's end of its veth pair, on the bridge
NETNS_PREFIX = "steer-"  # steer-<pod uid>: a pod's network namespace, in /run/netns
TABLE_PREFIX = "steer_"  # steer_<8 hex>: the node's nftables table
POD_INTERFACE = "eth0"


def _digest(text: str, size: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def bridge(node: str) -> str:
    return f"{BRIDGE_PREFIX}{_digest(node, 8)}"


def table(node: str) -> str:
    return f"{TABLE_PREFIX}{_digest(node, 8)}"


def veth(pod_uid: str) -> str:
    return f"{VETH_PREFIX}{_digest(pod_uid, 12)}"


def netns(pod_uid: str) -> str:
    return f"{NETNS_PREFIX}{pod_uid}"


def pod_uid_of_netns(name: str) -> str | None:
    """The pod uid a namespace name carries, or None if the name is not one of ours."""
    return name[len(NETNS_PREFIX) :] if name.startswith(NETNS_PREFIX) else None
