"""Service and Endpoints (core/v1); NetworkPolicy and IPAddress (networking.k8s.io/v1), the
latter the record of one Service's ClusterIP, which makes two Services holding one address
impossible; NodePort (networking.steersman.io/v1), the record of one Service's nodePort, which
does the same for a port opened on every node (docs/networking.md)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

import msgspec

from bus.meta import Base, ConditionStatus, Int32, Int64, LabelSelector, ObjectReference, Resource
from bus.resources.pod import IntOrString


class ServicePort(Base):
    port: Int32
    name: str = ""
    protocol: Literal["TCP", "UDP"] = "TCP"
    target_port: IntOrString | None = None
    node_port: Int32 | None = None


ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]
IPFamily = Literal["IPv4"]  # a single-stack IPv4 cluster
IPFamilyPolicy = Literal["SingleStack", "PreferDualStack", "RequireDualStack"]
HEADLESS = "None"  # `clusterIP: None`: no address (DNS answers with the endpoints themselves)


class ClientIPConfig(Base):
    timeout_seconds: Int32 | None = None


class SessionAffinityConfig(Base):
    client_ip: ClientIPConfig | None = msgspec.field(default=None, name="clientIP")


class ServiceSpec(Base):
    ports: list[ServicePort]
    selector: dict[str, str] = {}
    type: ServiceType = "ClusterIP"
    session_affinity: Literal["None", "ClientIP"] = "None"
    session_affinity_config: SessionAffinityConfig | None = None
    # Set by the API at create (docs/networking.md, Services) unless given; Kubernetes' spelling.
    cluster_ip: str = msgspec.field(default="", name="clusterIP")
    cluster_ips: list[str] = msgspec.field(default_factory=list, name="clusterIPs")
    ip_families: list[IPFamily] = []
    ip_family_policy: IPFamilyPolicy | None = None

    @property
    def headless(self) -> bool:
        return self.cluster_ip == HEADLESS


class ServiceCondition(Base):
    """Kubernetes' `metav1.Condition`, as a ServiceStatus carries it."""

    type: str
    status: ConditionStatus
    observed_generation: Int64 = 0
    last_transition_time: datetime | None = None
    reason: str = ""
    message: str = ""


class LoadBalancerIngress(Base):
    ip: str


class LoadBalancerStatus(Base):
    ingress: list[LoadBalancerIngress] = []


class ServiceStatus(Base):
    conditions: list[ServiceCondition] = []
    load_balancer: LoadBalancerStatus = msgspec.field(default_factory=LoadBalancerStatus)


class Service(Resource):
    spec: ServiceSpec
    status: ServiceStatus = msgspec.field(default_factory=ServiceStatus)


NODE_PORT_TYPES = ("NodePort", "LoadBalancer")  # the Service types that open a port on every node


def held_cluster_ip(service: Service) -> str:
    """The ClusterIP `service` holds (its IPAddress's name); "" for none (headless, or none yet)."""
    address = service.spec.cluster_ip
    return address if address != HEADLESS else ""


def held_node_ports(service: Service) -> list[int]:
    """The nodePorts `service` holds (its NodePorts' names): those of its ports, if its type
    opens any."""
    if service.spec.type not in NODE_PORT_TYPES:
        return []
    return [port.node_port for port in service.spec.ports if port.node_port is not None]


class EndpointAddress(Base):
    ip: str
    hostname: str = ""
    node_name: str = ""
    target_ref: ObjectReference | None = None


class EndpointPort(Base):
    port: Int32
    name: str = ""
    protocol: Literal["TCP", "UDP"] = "TCP"


class EndpointSubset(Base):
    addresses: list[EndpointAddress] = []
    not_ready_addresses: list[EndpointAddress] = []
    ports: list[EndpointPort] = []


class Endpoints(Resource):
    subsets: list[EndpointSubset] = []


# -- NetworkPolicy (networking.k8s.io/v1)

PolicyType = Literal["Ingress", "Egress"]


class IPBlock(Base):
    """A range of addresses (`cidr`) minus some ranges inside it (`except`)."""

    cidr: str
    except_: list[str] = msgspec.field(default_factory=list, name="except")


class NetworkPolicyPeer(Base):
    """Who may talk: pods chosen by `podSelector` (in the policy's namespace, or in the namespaces
    chosen by `namespaceSelector` when both are set), every pod of the namespaces chosen by
    `namespaceSelector` alone, or addresses (`ipBlock`, which stands alone)."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


class NetworkPolicyPort(Base):
    """A protocol and a port (a number or a container port's name), or a range up to `endPort`;
    no port means every port of the protocol."""

    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: IntOrString | None = None
    end_port: Int32 | None = None


class NetworkPolicyIngressRule(Base):
    from_: list[NetworkPolicyPeer] = msgspec.field(default_factory=list, name="from")
    ports: list[NetworkPolicyPort] = []


class NetworkPolicyEgressRule(Base):
    to: list[NetworkPolicyPeer] = []
    ports: list[NetworkPolicyPort] = []


class NetworkPolicySpec(Base):
    pod_selector: LabelSelector = msgspec.field(default_factory=LabelSelector)
    policy_types: list[PolicyType] = []
    ingress: list[NetworkPolicyIngressRule] = []
    egress: list[NetworkPolicyEgressRule] = []

    def __post_init__(self) -> None:
        # Kubernetes' defaulting: Ingress always, Egress too when there are egress rules. Done on
        # decoding, so the stored object and every reader see the types that are enforced.
        if not self.policy_types:
            self.policy_types = ["Ingress", "Egress"] if self.egress else ["Ingress"]


class NetworkPolicy(Resource):
    API_VERSION: ClassVar[str] = "networking.k8s.io/v1"
    spec: NetworkPolicySpec = msgspec.field(default_factory=NetworkPolicySpec)


# Kubernetes' label on the IPAddresses its ClusterIP allocator makes: the repair pass deletes no other.
MANAGED_BY_LABEL = "ipaddress.kubernetes.io/managed-by"
CLUSTER_IP_ALLOCATOR = "ipallocator.k8s.io"


class ParentReference(Base):
    """The object an IPAddress belongs to (for a ClusterIP: group "", resource "services")."""

    resource: str
    name: str
    group: str = ""
    namespace: str = ""


class IPAddressSpec(Base):
    parent_ref: ParentReference


class IPAddress(Resource):
    """One allocated address, named by the address itself (`10.96.0.10`); cluster-scoped."""

    API_VERSION: ClassVar[str] = "networking.k8s.io/v1"
    spec: IPAddressSpec


# The label on the NodePorts the API's nodePort allocator makes: the repair pass deletes no other.
NODE_PORT_MANAGED_BY_LABEL = "nodeport.steersman.io/managed-by"
NODE_PORT_ALLOCATOR = "nodeportallocator.steersman.io"


class NodePortSpec(Base):
    parent_ref: ParentReference


class NodePort(Resource):
    """One allocated nodePort, named by the port number (`30080`); cluster-scoped. Kubernetes
    keeps a bitmap of the range instead; one object per port lets a create-only compare-and-set
    decide which of two API replicas gets a port."""

    API_VERSION: ClassVar[str] = "networking.steersman.io/v1"
    spec: NodePortSpec
