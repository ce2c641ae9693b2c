"""Cluster-scoped kinds: Namespace and Node (core/v1)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from bus.meta import Base, ConditionStatus, Resource


class NamespaceSpec(Base):
    finalizers: list[str] = []


class NamespaceStatus(Base):
    phase: Literal["", "Active", "Terminating"] = ""  # always written out: see PodStatus

    def __post_init__(self) -> None:
        if not self.phase:
            self.phase = "Active"


class Namespace(Resource):
    spec: NamespaceSpec = msgspec.field(default_factory=NamespaceSpec)
    status: NamespaceStatus = msgspec.field(default_factory=NamespaceStatus)


class Taint(Base):
    key: str
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
    value: str = ""
    time_added: datetime | None = None


class NodeSpec(Base):
    unschedulable: bool = False
    taints: list[Taint] = []
    # The node's share of the cluster CIDR (the node IPAM controller sets it once); Kubernetes'
    # spelling, so the JSON names are given.
    pod_cidr: str = msgspec.field(default="", name="podCIDR")
    pod_cidrs: list[str] = msgspec.field(default_factory=list, name="podCIDRs")


class NodeCondition(Base):
    type: str
    status: ConditionStatus
    last_heartbeat_time: datetime | None = None
    last_transition_time: datetime | None = None
    reason: str = ""
    message: str = ""


class NodeAddress(Base):
    type: Literal["InternalIP", "ExternalIP", "Hostname"]
    address: str


class NodeSystemInfo(Base):
    container_runtime_version: str = ""
    kernel_version: str = ""
    os_image: str = ""
    operating_system: str = ""
    architecture: str = ""
    kubelet_version: str = ""


class NodeStatus(Base):
    capacity: dict[str, str] = {}
    allocatable: dict[str, str] = {}
    conditions: list[NodeCondition] = []
    addresses: list[NodeAddress] = []
    node_info: NodeSystemInfo = msgspec.field(default_factory=NodeSystemInfo)


class Node(Resource):
    spec: NodeSpec = msgspec.field(default_factory=NodeSpec)
    status: NodeStatus = msgspec.field(default_factory=NodeStatus)
