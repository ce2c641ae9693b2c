"""The objects a fuzz run starts from, so that get, patch, update and delete find something."""

from __future__ import annotations

from bus.events import make_event, reference
from bus.meta import LabelSelector, ObjectMeta, Resource
from bus.resources import Deployment, Endpoints, HorizontalPodAutoscaler, Lease, Pod, ReplicaSet, Service
from bus.resources.apps import DeploymentSpec, ReplicaSetSpec
from bus.resources.autoscaling import CrossVersionObjectReference, HorizontalPodAutoscalerSpec
from bus.resources.networking import ServicePort, ServiceSpec
from bus.resources.pod import Container, PodSpec, PodTemplateSpec

NAMES = ("web", "db")
RUNNING = "logs-pod"  # bound to the fuzzed node agent, so logs and exec find a container


def pod_spec(node: str = "") -> PodSpec:
    return PodSpec(containers=[Container(name="main", image="busybox:local")], node_name=node)


def fixture_objects(namespace: str, node: str = "") -> list[Resource]:
    labels = {"app": "web"}
    template = PodTemplateSpec(metadata=ObjectMeta(labels=labels), spec=pod_spec())
    objects: list[Resource] = []
    for name in NAMES:
        meta = ObjectMeta(name=name, namespace=namespace, labels=labels)
        objects += [
            Pod(metadata=meta, spec=pod_spec()),
            ReplicaSet(
                metadata=meta,
                spec=ReplicaSetSpec(selector=LabelSelector(match_labels=labels), template=template),
            ),
            Deployment(
                metadata=meta,
                spec=DeploymentSpec(selector=LabelSelector(match_labels=labels), template=template),
            ),
            Service(metadata=meta, spec=ServiceSpec(ports=[ServicePort(port=80)], selector=labels)),
            Endpoints(metadata=meta),
            HorizontalPodAutoscaler(
                metadata=meta,
                spec=HorizontalPodAutoscalerSpec(
                    scale_target_ref=CrossVersionObjectReference(kind="Deployment", name="web"),
                    max_replicas=3,
                ),
            ),
            Lease(metadata=meta),
        ]
    objects.append(make_event(reference(objects[0]), reason="Fuzz", message="a fixture", component="fuzz"))
    if node:
        objects.append(Pod(metadata=ObjectMeta(name=RUNNING, namespace=namespace), spec=pod_spec(node)))
    return objects
