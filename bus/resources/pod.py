"""Pod and the container types it is made of (core/v1)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from bus.meta import Base, ConditionStatus, Int32, Int64, LabelSelectorRequirement, ObjectMeta, Resource

IntOrString = Int32 | str


class EnvVar(Base):
    name: str
    value: str = ""


class ContainerPort(Base):
    container_port: Int32
    name: str = ""
    protocol: Literal["TCP", "UDP"] = "TCP"
    host_port: Int32 | None = None


class ResourceRequirements(Base):
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}


class ExecAction(Base):
    command: list[str] = []


class HTTPHeader(Base):
    name: str
    value: str


class HTTPGetAction(Base):
    port: IntOrString
    path: str = "/"
    host: str = ""
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"
    http_headers: list[HTTPHeader] = []


class TCPSocketAction(Base):
    port: IntOrString
    host: str = ""


class Probe(Base):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    initial_delay_seconds: Int32 = 0
    period_seconds: Int32 = 10
    timeout_seconds: Int32 = 1
    success_threshold: Int32 = 1
    failure_threshold: Int32 = 3


class Container(Base):
    name: str
    image: str
    command: list[str] = []
    args: list[str] = []
    working_dir: str = ""
    env: list[EnvVar] = []
    ports: list[ContainerPort] = []
    resources: ResourceRequirements = msgspec.field(default_factory=ResourceRequirements)
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"


class Toleration(Base):
    key: str = ""
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""
    toleration_seconds: Int64 | None = None


class NodeSelectorTerm(Base):
    match_expressions: list[LabelSelectorRequirement] = []


class NodeSelector(Base):
    node_selector_terms: list[NodeSelectorTerm]


class PreferredSchedulingTerm(Base):
    weight: Int32
    preference: NodeSelectorTerm


class NodeAffinity(Base):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] = []


class Affinity(Base):
    node_affinity: NodeAffinity | None = None


class PodDNSConfigOption(Base):
    name: str = ""  # required (validation says so, naming the option)
    value: str | None = None  # `ndots` alone differs from `ndots:` with a value


class PodDNSConfig(Base):
    """Added to what `dnsPolicy` gives: nameservers and searches appended, options overriding by name."""

    nameservers: list[str] = []
    searches: list[str] = []
    options: list[PodDNSConfigOption] = []


DNSPolicy = Literal["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]


class PodSpec(Base):
    containers: list[Container]
    restart_policy: Literal["Always", "OnFailure", "Never"] = "Always"
    termination_grace_period_seconds: Int64 = 30
    node_name: str = ""
    node_selector: dict[str, str] = {}
    affinity: Affinity | None = None
    tolerations: list[Toleration] = []
    scheduler_name: str = "default-scheduler"
    hostname: str = ""
    # The node's network instead of a namespace and address of the pod's own (docs/networking.md).
    host_network: bool = False
    subdomain: str = ""
    dns_policy: DNSPolicy = "ClusterFirst"
    dns_config: PodDNSConfig | None = None


class PodTemplateSpec(Base):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: PodSpec | None = None


class PodCondition(Base):
    type: str
    status: ConditionStatus
    last_probe_time: datetime | None = None
    last_transition_time: datetime | None = None
    reason: str = ""
    message: str = ""


class ContainerStateWaiting(Base):
    reason: str = ""
    message: str = ""


class ContainerStateRunning(Base):
    started_at: datetime | None = None


class ContainerStateTerminated(Base):
    exit_code: Int32
    signal: Int32 = 0
    reason: str = ""
    message: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    container_id: str = msgspec.field(default="", name="containerID")


class ContainerState(Base):
    waiting: ContainerStateWaiting | None = None
    running: ContainerStateRunning | None = None
    terminated: ContainerStateTerminated | None = None


class ContainerStatus(Base):
    name: str
    ready: bool = False
    restart_count: Int32 = 0
    state: ContainerState = msgspec.field(default_factory=ContainerState)
    last_state: ContainerState = msgspec.field(default_factory=ContainerState)
    image: str = ""
    image_id: str = msgspec.field(default="", name="imageID")
    container_id: str = msgspec.field(default="", name="containerID")
    started: bool | None = None


class PodIP(Base):
    ip: str


class HostIP(Base):
    ip: str


class HostPortMapping(Base):
    """Where a declared container port is reachable: host networking gives each its own host port.

    A steersman extension of PodStatus (Kubernetes' pods have their own IPs instead).
    """

    container: str
    container_port: Int32
    host_port: Int32
    name: str = ""
    protocol: Literal["TCP", "UDP"] = "TCP"


PodPhase = Literal["", "Pending", "Running", "Succeeded", "Failed", "Unknown"]


class PodStatus(Base):
    # Empty until filled in below, so that the phase is always written out (an omitted
    # default would leave readers of the JSON guessing).
    phase: PodPhase = ""
    conditions: list[PodCondition] = []
    message: str = ""
    reason: str = ""
    host_ip: str = msgspec.field(default="", name="hostIP")
    pod_ip: str = msgspec.field(default="", name="podIP")
    pod_ips: list[PodIP] = msgspec.field(default_factory=list, name="podIPs")
    host_ips: list[HostIP] = msgspec.field(default_factory=list, name="hostIPs")
    start_time: datetime | None = None
    container_statuses: list[ContainerStatus] = []
    host_ports: list[HostPortMapping] = []

    def __post_init__(self) -> None:
        if not self.phase:
            self.phase = "Pending"


class Pod(Resource):
    spec: PodSpec
    status: PodStatus = msgspec.field(default_factory=PodStatus)
