"""Every resource kind steersman stores, one module per group of kinds."""

from bus.resources.apps import Deployment, ReplicaSet
from bus.resources.autoscaling import HorizontalPodAutoscaler
from bus.resources.cluster import Namespace, Node
from bus.resources.networking import Endpoints, IPAddress, NetworkPolicy, NodePort, Service
from bus.resources.pod import Pod
from bus.resources.records import Event, Lease

__all__ = [
    "Deployment",
    "Endpoints",
    "Event",
    "HorizontalPodAutoscaler",
    "IPAddress",
    "Lease",
    "Namespace",
    "NetworkPolicy",
    "Node",
    "NodePort",
    "Pod",
    "ReplicaSet",
    "Service",
]
