"""Which network the node's pods get: their own (pod) or the host's (host)."""

from __future__ import annotations

import os
from pathlib import Path

from nodeagent.runtime import Runtime, RuntimeFailure


class NetworkModeError(RuntimeFailure):
    reason = "NetworkModeError"


def pod_network_possible(runtime: Runtime) -> str:
    """ "" if this agent can make pod namespaces and links, else why not."""
    if runtime.name == "fake":
        return "the fake runtime has no processes to put in namespaces"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if runtime.name == "docker" and not getattr(runtime, "local", True):
        return "the Docker engine is not on this host (its containers' namespaces are out of reach)"
    if not Path("/proc/sys/net/ipv4/ip_forward").exists():
        return "no IPv4 forwarding in this kernel"
    return ""


def resolve_mode(requested: str, runtime: Runtime) -> str:
    """`pod` or `host` for a requested `auto`, `pod` or `host`; NetworkModeError if `pod` was
    asked for and cannot be."""
    if requested == "host":
        return "host"
    why_not = pod_network_possible(runtime)
    if requested == "pod" and why_not:
        raise NetworkModeError(f"--network pod is impossible here: {why_not}")
    return "host" if why_not else "pod"
