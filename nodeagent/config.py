"""The node agent's settings and the parsing of its command-line values.

`--capacity cpu=2,memory=4Gi,pods=110`, `--labels k=v,...`, `--taints k=v:NoSchedule,...`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bus.connection import Credentials
from bus.quantity import parse_quantity
from bus.resources.cluster import Taint

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


@dataclass
class AgentConfig:
    name: str
    address: str = "127.0.0.1"
    runtime: str = "auto"
    servers: str = "nats://127.0.0.1:4222"
    credentials: Credentials = field(default_factory=Credentials)
    capacity: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[Taint] = field(default_factory=list)
    data_dir: Path = Path(".steer/nodes")
    # Kubernetes' kubelet: 10 s doubling to 5 min, reset after 10 min of running.
    backoff_initial: float = 10.0
    backoff_cap: float = 300.0
    backoff_reset: float = 600.0
    lease_duration: float = 12.0
    lease_renew: float = 3.0
    status_interval: float = 60.0
    resync_interval: float = 30.0
    port_range: tuple[int, int] = (20000, 29999)
    metrics_interval: float = 5.0  # seconds between usage samples; 0: publish none
    container_gc_delay: float = 30.0  # seconds a finished pod's containers are kept; 0: none
    # The service proxy's balancing (round-robin, least-connections), or off.
    proxy: str = "round-robin"
    # pod: a namespace and address per pod (docs/networking.md); host: the host's network for
    # every pod; auto: pod where the agent may make namespaces (root, a local engine). The
    # command line's default is auto.
    network: str = "host"
    cluster_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/16"
    clean_up: bool = False  # remove what the node's pod network made, then exit


def default_capacity() -> dict[str, str]:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{memory // 1024 // 1024}Mi", "pods": "110"}


def parse_pairs(text: str, what: str) -> dict[str, str]:
    """`a=1,b=2` -> {"a": "1", "b": "2"}; ValueError naming the bad part."""
    pairs: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ValueError(f'{what}: "{part}" is not key=value')
        pairs[key.strip()] = value.strip()
    return pairs


def parse_capacity(text: str) -> dict[str, str]:
    capacity = default_capacity()
    for key, value in parse_pairs(text, "--capacity").items():
        if key not in ("cpu", "memory", "pods"):
            raise ValueError(f'--capacity: unknown resource "{key}" (use cpu, memory, pods)')
        try:
            parse_quantity(value)
        except ValueError as err:
            raise ValueError(f"--capacity: {key}: {err}") from None
        capacity[key] = value
    return capacity


def parse_taints(text: str) -> list[Taint]:
    """`dedicated=gpu:NoSchedule,spot:PreferNoSchedule` -> taints."""
    taints = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        spec, sep, effect = part.rpartition(":")
        if not sep or effect not in TAINT_EFFECTS:
            raise ValueError(f'--taints: "{part}" needs an effect ({", ".join(TAINT_EFFECTS)}) after ":"')
        key, _, value = spec.partition("=")
        if not key:
            raise ValueError(f'--taints: "{part}" has no key')
        taints.append(Taint(key=key, value=value, effect=effect))  # type: ignore[arg-type]
    return taints
