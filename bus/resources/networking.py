"""Service and Endpoints (core/v1), and IPAddress (networking.k8s.io/v1): the record of one
Service's ClusterIP, which makes two Services holding one address impossible (docs/networking.md)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

import msgspec

from bus.meta import Base, ConditionStatus, Int32, Int64, ObjectReference, Resource
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


class ServiceSpec(Base):
    ports: list[ServicePort]
    selector: dict[str, str] = {}
    type: ServiceType = "ClusterIP"
    session_affinity: Literal["None", "ClientIP"] = "None"
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
