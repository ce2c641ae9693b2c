"""Validation through the one entry point, `decode_object`, with raw manifests as users write them."""

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest

from bus.errors import Invalid, StatusCause
from bus.meta import Resource
from bus.validation import decode_object

Manifest = dict[str, Any]
DELETE = object()


def container(name: str = "web", **extra: Any) -> Manifest:
    return {"name": name, "image": "busybox:local", **extra}


def pod() -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "containers": [
                container(
                    command=["httpd", "-f"],
                    env=[{"name": "GREETING", "value": "hi"}, {"name": "my.env-name"}],
                    ports=[
                        {"containerPort": 8080, "name": "http"},
                        {"containerPort": 9090, "protocol": "UDP"},
                    ],
                    resources={
                        "requests": {"cpu": "250m", "memory": "64Mi"},
                        "limits": {"cpu": "1", "memory": "128Mi"},
                    },
                    livenessProbe={"httpGet": {"port": "http", "path": "/healthz"}, "periodSeconds": 5},
                    readinessProbe={"tcpSocket": {"port": 8080}, "successThreshold": 2},
                    startupProbe={"exec": {"command": ["true"]}, "failureThreshold": 30},
                ),
                container("sidecar", ports=[{"containerPort": 9000, "name": "metrics", "hostPort": 19000}]),
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 0,
            "nodeSelector": {"example.com/disk": "ssd"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"},
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 30,
                },
                {"operator": "Exists"},
            ],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}
                        ]
                    },
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 100,
                            "preference": {"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]},
                        }
                    ],
                }
            },
        },
    }


def template() -> Manifest:
    return {"metadata": {"labels": {"app": "web", "tier": "front"}}, "spec": {"containers": [container()]}}


def replica_set() -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web-5d8f"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
    }


def deployment() -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "annotations": {"example.com/owner": "team-a", "note": "free text: any value"},
        },
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ],
            },
            "template": template(),
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "0%"}},
            "minReadySeconds": 5,
            "revisionHistoryLimit": 0,
            "progressDeadlineSeconds": 60,
        },
    }


def service() -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "metrics", "port": 9000, "targetPort": 9000, "protocol": "UDP"},
            ],
        },
    }


def endpoints() -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "web"},
        "subsets": [
            {
                "addresses": [{"ip": "127.0.0.11", "nodeName": "n1"}, {"ip": "::1"}],
                "notReadyAddresses": [{"ip": "10.9.8.7"}],
                "ports": [{"name": "http", "port": 40001}, {"name": "metrics", "port": 40002}],
            }
        ],
    }


def hpa() -> Manifest:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}},
                },
                {
                    "type": "Resource",
                    "resource": {
                        "name": "memory",
                        "target": {"type": "AverageValue", "averageValue": "200Mi"},
                    },
                },
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "requests_per_second"},
                        "target": {"type": "AverageValue", "averageValue": "100"},
                    },
                },
            ],
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
                },
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "selectPolicy": "Max",
                    "policies": [{"type": "Pods", "value": 4, "periodSeconds": 1800}],
                },
            },
        },
    }


def node() -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1", "zone": "a"}},
        "spec": {
            "taints": [
                {"key": "dedicated", "value": "web", "effect": "NoSchedule"},
                {"key": "dedicated", "value": "web", "effect": "NoExecute"},
            ],
            "podCIDR": "10.244.1.0/24",
            "podCIDRs": ["10.244.1.0/24"],
        },
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "3500m", "memory": "7.5Gi", "pods": "110"},
            "addresses": [{"type": "InternalIP", "address": "127.0.0.11"}],
        },
    }


def namespace() -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "team-a", "labels": {"env": "prod"}},
    }


def lease() -> Manifest:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "scheduler", "namespace": "steer-system"},
        "spec": {
            "holderIdentity": "scheduler-1",
            "leaseDurationSeconds": 15,
            "renewTime": "2024-05-01T10:00:00Z",
        },
    }


def event() -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "web-1.17a2b3c4d5e6f7a8", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default"},
        "reason": "Scheduled",
        "message": "Successfully assigned default/web-1 to n1",
        "type": "Normal",
        "count": 1,
    }


def ip_address() -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IPAddress",
        "metadata": {"name": "10.96.0.10"},
        "spec": {"parentRef": {"resource": "services", "namespace": "default", "name": "web"}},
    }


def node_port() -> Manifest:
    return {
        "apiVersion": "networking.steersman.io/v1",
        "kind": "NodePort",
        "metadata": {"name": "30080"},
        "spec": {"parentRef": {"resource": "services", "namespace": "default", "name": "web"}},
    }


KINDS: list[Callable[[], Manifest]] = [
    ip_address,
    node_port,
    pod,
    replica_set,
    deployment,
    service,
    endpoints,
    hpa,
    node,
    namespace,
    lease,
    event,
]

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def patched(manifest: Manifest, changes: dict[str, Any]) -> Manifest:
    """A copy of `manifest` with each dotted path (`spec.containers[0].image`) set, or removed with DELETE."""
    result = copy.deepcopy(manifest)
    for path, value in changes.items():
        steps: list[str | int] = [name if name else int(index) for name, index in _STEP.findall(path)]
        parent: Any = result
        for step in steps[:-1]:
            parent = parent[step]
        if value is DELETE:
            del parent[steps[-1]]
        else:
            parent[steps[-1]] = value
    return result


def causes_of(manifest: Manifest) -> list[StatusCause]:
    with pytest.raises(Invalid) as err:
        decode_object(manifest)
    return err.value.causes


def assert_cause(causes: list[StatusCause], field: str, fragment: str) -> None:
    found = any(cause.field == field and fragment in cause.message for cause in causes)
    assert found, f"no cause {field}: ...{fragment}... among:\n" + "\n".join(str(c) for c in causes)


Case = tuple[Callable[[], Manifest], dict[str, Any], str, str]


def at(make: Callable[[], Manifest], path: str, value: Any, fragment: str, *, field: str = "") -> Case:
    """A case that sets one field, expecting a cause at that field (or at `field`)."""
    return make, {path: value}, field or path, fragment


def case(make: Callable[[], Manifest], changes: dict[str, Any], field: str, fragment: str) -> Case:
    return make, changes, field, fragment


# -- valid manifests


@pytest.mark.parametrize("make", KINDS, ids=lambda make: make.__name__)
def test_valid_manifest_of_every_kind(make: Callable[[], Manifest]) -> None:
    obj = decode_object(make())
    assert isinstance(obj, Resource)
    assert obj.kind == make()["kind"]


@pytest.mark.parametrize(
    ("make", "changes"),
    [
        (pod, {"metadata.name": DELETE, "metadata.generateName": "web-"}),
        (pod, {"metadata.name": "a" * 63}),
        (pod, {"metadata.labels": {"example.com/app": "", "a.b_c-d": "V.1_x-Y"}}),
        (pod, {"spec.containers[0].livenessProbe.successThreshold": 1}),
        (replica_set, {"spec.replicas": 0}),
        (
            replica_set,
            {"spec.selector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}},
        ),
        (deployment, {"spec.strategy": {"type": "Recreate"}}),
        (deployment, {"spec.strategy.rollingUpdate": {"maxSurge": "0%", "maxUnavailable": "100%"}}),
        (service, {"spec.ports": [{"port": 80}]}),
        (
            service,
            {"spec.type": "NodePort", "spec.ports[0].nodePort": 30080, "spec.ports[1].nodePort": 32767},
        ),
        (
            service,
            {"spec.type": "LoadBalancer", "spec.ports[0].nodePort": 30080, "spec.ports[1].nodePort": 32767},
        ),
        (service, {"spec.clusterIP": "10.96.0.10", "spec.clusterIPs": ["10.96.0.10"]}),
        (
            service,
            {"spec.clusterIP": "None", "spec.ipFamilies": ["IPv4"], "spec.ipFamilyPolicy": "SingleStack"},
        ),
        (service, {"spec.clusterIPs": ["None"], "spec.ipFamilyPolicy": "PreferDualStack"}),
        (service, {"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.11"}]}}}),
        (ip_address, {"spec.parentRef": {"group": "example.com", "resource": "gateways", "name": "gw"}}),
        (hpa, {"spec.minReplicas": 10}),
        (event, {"metadata.name": "web-1"}),
        (lease, {"spec.leaseDurationSeconds": None}),
    ],
)
def test_valid_variants(make: Callable[[], Manifest], changes: dict[str, Any]) -> None:
    decode_object(patched(make(), changes))


# -- semantic rules: one broken field each, named by path with Kubernetes' wording

C = "spec.containers[0]"
TEMPLATE = "spec.template.spec"
AFFINITY = "spec.affinity.nodeAffinity"
REQUIRED_TERM = (
    f"{AFFINITY}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]"
)
ROLLING = "spec.strategy.rollingUpdate"
POLICY = "spec.behavior.scaleUp.policies[0]"

INVALID: list[Case] = [
    # metadata
    at(pod, "metadata.name", "Web_1", "a lowercase RFC 1123 label must consist of"),
    at(pod, "metadata.name", "web.1", "RFC 1123 label"),
    at(pod, "metadata.name", "-web", "RFC 1123 label"),
    at(pod, "metadata.name", "a" * 64, "must be no more than 63 characters"),
    at(pod, "metadata.name", DELETE, "Required value: name or generateName is required"),
    at(pod, "metadata.name", "", "Required value"),
    case(
        pod,
        {"metadata.name": DELETE, "metadata.generateName": "Web-"},
        "metadata.generateName",
        "RFC 1123 label",
    ),
    at(pod, "metadata.namespace", "Prod", 'Invalid value: "Prod": a lowercase RFC 1123 label'),
    at(event, "metadata.name", "Web.1", "a lowercase RFC 1123 subdomain must consist of"),
    at(event, "metadata.name", "a" * 254, "must be no more than 253 characters"),
    at(pod, "metadata.labels", {"-app": "web"}, 'Invalid value: "-app": name part must consist'),
    at(pod, "metadata.labels", {"a/b/c": "x"}, "a qualified name must consist"),
    at(pod, "metadata.labels", {"/app": "x"}, "prefix part must be non-empty"),
    at(pod, "metadata.labels", {"Example.com/app": "x"}, "prefix part a lowercase RFC 1123 subdomain"),
    at(pod, "metadata.labels", {"a" * 64: "x"}, "name part must be no more than 63 characters"),
    at(
        pod,
        "metadata.labels",
        {"app": "web site"},
        "a valid label must be an empty string or",
        field="metadata.labels[app]",
    ),
    at(
        pod,
        "metadata.labels",
        {"app": "x" * 64},
        "must be no more than 63 characters",
        field="metadata.labels[app]",
    ),
    at(pod, "metadata.annotations", {"bad key": "x"}, 'Invalid value: "bad key"'),
    at(pod, "metadata.annotations", {"big": "x" * (256 * 1024)}, "Too long: must have at most 262144 bytes"),
    # pod spec
    at(pod, "spec.containers", [], "Required value"),
    at(pod, f"{C}.name", "Web", "RFC 1123 label"),
    at(pod, "spec.containers[1].name", "web", 'Duplicate value: "web"'),
    at(pod, f"{C}.image", "", "Required value"),
    at(pod, f"{C}.ports[0].containerPort", 0, "Invalid value: 0: must be between 1 and 65535, inclusive"),
    at(pod, f"{C}.ports[1].containerPort", 65536, "must be between 1 and 65535"),
    at(pod, "spec.containers[1].ports[0].hostPort", 0, "must be between 1 and 65535"),
    at(
        pod,
        f"{C}.ports[0].name",
        "HTTP",
        "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
    ),
    at(pod, f"{C}.ports[0].name", "h--p", "must not contain consecutive hyphens"),
    at(pod, f"{C}.ports[0].name", "8080", "must contain at least one letter (a-z)"),
    at(pod, f"{C}.ports[0].name", "http-", "must not begin or end with a hyphen"),
    at(pod, f"{C}.ports[0].name", "a-very-long-name", "must be no more than 15 characters"),
    at(pod, "spec.containers[1].ports[0].name", "http", 'Duplicate value: "http"'),
    at(pod, f"{C}.env[0].name", "1BAD", "a valid environment variable name must consist of"),
    at(pod, f"{C}.env[1].name", "..x", "must not start with '..'"),
    at(
        pod,
        f"{C}.resources.limits.pods",
        "10",
        'Unsupported value: "pods": supported values: "cpu", "memory"',
        field=f"{C}.resources.limits[pods]",
    ),
    at(
        pod,
        f"{C}.resources.requests.cpu",
        "lots",
        "invalid quantity 'lots'",
        field=f"{C}.resources.requests[cpu]",
    ),
    at(
        pod,
        f"{C}.resources.requests.memory",
        "-1Mi",
        "must be greater than or equal to 0",
        field=f"{C}.resources.requests[memory]",
    ),
    at(
        pod,
        f"{C}.resources.requests.cpu",
        "2",
        'Invalid value: "2": must be less than or equal to cpu limit of 1',
        field=f"{C}.resources.requests[cpu]",
    ),
    at(
        pod,
        f"{C}.resources.requests.memory",
        "1Gi",
        "must be less than or equal to memory limit of 128Mi",
        field=f"{C}.resources.requests[memory]",
    ),
    at(
        pod,
        f"{C}.livenessProbe.httpGet",
        DELETE,
        "Required value: must specify a handler type",
        field=f"{C}.livenessProbe",
    ),
    at(
        pod,
        f"{C}.livenessProbe.tcpSocket",
        {"port": 8080},
        "Forbidden: may not specify more than 1 handler type",
        field=f"{C}.livenessProbe",
    ),
    at(pod, f"{C}.livenessProbe.httpGet.port", 0, "must be between 1 and 65535"),
    at(pod, f"{C}.livenessProbe.httpGet.port", "Http_Port", "must contain only alpha-numeric"),
    at(pod, f"{C}.readinessProbe.tcpSocket.port", 70000, "must be between 1 and 65535"),
    at(pod, f"{C}.startupProbe.exec.command", [], "Required value"),
    at(pod, f"{C}.livenessProbe.periodSeconds", 0, "Invalid value: 0: must be greater than or equal to 1"),
    at(pod, f"{C}.livenessProbe.timeoutSeconds", 0, "must be greater than or equal to 1"),
    at(pod, f"{C}.readinessProbe.failureThreshold", 0, "must be greater than or equal to 1"),
    at(pod, f"{C}.readinessProbe.successThreshold", 0, "must be greater than or equal to 1"),
    at(pod, f"{C}.livenessProbe.initialDelaySeconds", -1, "must be greater than or equal to 0"),
    at(pod, f"{C}.livenessProbe.successThreshold", 2, "Invalid value: 2: must be 1"),
    at(pod, f"{C}.startupProbe.successThreshold", 3, "must be 1"),
    at(pod, "spec.terminationGracePeriodSeconds", -1, "must be greater than or equal to 0"),
    at(pod, "spec.nodeSelector", {"disk type": "ssd"}, 'Invalid value: "disk type"'),
    at(pod, "spec.hostname", "Web_1", "RFC 1123 label"),
    at(
        pod,
        "spec.tolerations[1].value",
        "x",
        "value must be empty when `operator` is 'Exists'",
        field="spec.tolerations[1].operator",
    ),
    at(
        pod,
        "spec.tolerations[0].key",
        "",
        "operator must be Exists when `key` is empty",
        field="spec.tolerations[0].operator",
    ),
    at(
        pod,
        "spec.tolerations[0].tolerationSeconds",
        10,
        "effect must be 'NoExecute' when `tolerationSeconds` is set",
        field="spec.tolerations[0].effect",
    ),
    at(pod, "spec.tolerations[0].key", "bad key", "name part must consist"),
    at(
        pod,
        f"{REQUIRED_TERM}.values",
        [],
        "Required value: must be specified when `operator` is 'In' or 'NotIn'",
    ),
    at(
        pod,
        f"{REQUIRED_TERM}.operator",
        "Exists",
        "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        field=f"{REQUIRED_TERM}.values",
    ),
    at(pod, f"{REQUIRED_TERM}.key", "bad key", "name part must consist"),
    at(
        pod,
        f"{AFFINITY}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
        [],
        "must have at least one node selector term",
    ),
    at(
        pod,
        f"{AFFINITY}.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
        0,
        "must be between 1 and 100, inclusive",
    ),
    at(
        pod,
        f"{AFFINITY}.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
        101,
        "must be between 1 and 100",
    ),
    # workloads
    at(replica_set, "spec.replicas", -1, "Invalid value: -1: must be greater than or equal to 0"),
    at(replica_set, "spec.minReadySeconds", -1, "must be greater than or equal to 0"),
    at(replica_set, "spec.selector", {}, "Required value: empty selector is invalid for replicaset"),
    at(deployment, "spec.selector", {}, "empty selector is invalid for deployment"),
    at(
        replica_set,
        "spec.selector.matchLabels",
        {"app": "api"},
        'Invalid value: {"app":"web","tier":"front"}: `selector` does not match template `labels`',
        field="spec.template.metadata.labels",
    ),
    at(
        deployment,
        "spec.selector.matchExpressions[1].operator",
        "Exists",
        "does not match",
        field="spec.template.metadata.labels",
    ),
    at(deployment, "spec.selector.matchExpressions[0].values", [], "Required value"),
    at(deployment, "spec.selector.matchExpressions[1].values", ["x"], "Forbidden"),
    at(
        deployment,
        "spec.selector.matchLabels",
        {"app": "-web"},
        "a valid label must be",
        field="spec.selector.matchLabels[app]",
    ),
    at(
        replica_set,
        "spec.template.metadata.labels.app",
        "web_",
        "a valid label must be",
        field="spec.template.metadata.labels[app]",
    ),
    at(replica_set, f"{TEMPLATE}", DELETE, "Required value", field=f"{TEMPLATE}.containers"),
    at(
        replica_set,
        f"{TEMPLATE}.restartPolicy",
        "Never",
        'Unsupported value: "Never": supported values: "Always"',
    ),
    at(deployment, f"{TEMPLATE}.restartPolicy", "OnFailure", 'supported values: "Always"'),
    at(
        deployment,
        f"{TEMPLATE}.containers[0].ports",
        [{"containerPort": 80}, {"containerPort": 0}],
        "must be between 1 and 65535",
        field=f"{TEMPLATE}.containers[0].ports[1].containerPort",
    ),
    at(deployment, "spec.revisionHistoryLimit", -1, "must be greater than or equal to 0"),
    at(
        deployment,
        "spec.progressDeadlineSeconds",
        5,
        "Invalid value: 5: must be greater than minReadySeconds",
    ),
    at(
        deployment,
        "spec.strategy.type",
        "Recreate",
        "Forbidden: may not be specified when strategy `type` is 'Recreate'",
        field=f"{ROLLING}",
    ),
    at(
        deployment,
        f"{ROLLING}.maxSurge",
        "25",
        "a valid percent string must be a numeric string followed by an ending '%'",
    ),
    at(deployment, f"{ROLLING}.maxSurge", -1, "must be greater than or equal to 0"),
    at(deployment, f"{ROLLING}.maxUnavailable", "150%", "must not be greater than 100%"),
    at(
        deployment,
        f"{ROLLING}.maxSurge",
        0,
        'Invalid value: "0%": may not be 0 when `maxSurge` is 0',
        field=f"{ROLLING}.maxUnavailable",
    ),
    case(
        deployment,
        {f"{ROLLING}.maxSurge": "0%", f"{ROLLING}.maxUnavailable": 0},
        f"{ROLLING}.maxUnavailable",
        "may not be 0 when `maxSurge` is 0",
    ),
    # Service and Endpoints
    at(service, "spec.ports", [], "Required value"),
    at(service, "spec.ports[0].port", 0, "must be between 1 and 65535"),
    at(service, "spec.ports[0].targetPort", 0, "must be between 1 and 65535"),
    at(service, "spec.ports[0].targetPort", "Http", "must contain only alpha-numeric"),
    at(service, "spec.ports[0].nodePort", 30080, "Forbidden: may not be used when `type` is 'ClusterIP'"),
    case(
        service,
        {"spec.type": "LoadBalancer", "spec.ports[0].nodePort": 70000},
        "spec.ports[0].nodePort",
        "must be between 1 and 65535",
    ),
    at(service, "spec.clusterIP", "10.96.0.1000", "must be a valid IP address"),
    at(service, "spec.clusterIP", "10.96.000.10", "must be a valid IP address"),
    at(service, "spec.clusterIP", "fd00::10", "must be an IPv4 address: this cluster is single-stack IPv4"),
    at(service, "spec.clusterIP", "none", "must be a valid IP address"),
    at(
        service,
        "spec.clusterIPs",
        ["10.96.0.1", "10.96.0.2"],
        "may specify no more than one IP for each IP family",
    ),
    at(service, "spec.clusterIPs", ["10.96.0.1x"], "must be a valid IP address", field="spec.clusterIPs[0]"),
    case(
        service,
        {"spec.clusterIP": "10.96.0.1", "spec.clusterIPs": ["10.96.0.2"]},
        "spec.clusterIPs",
        "first value must match `clusterIP`",
    ),
    at(service, "spec.ipFamilies", ["IPv4", "IPv4"], 'Duplicate value: "IPv4"', field="spec.ipFamilies[1]"),
    at(
        service,
        "spec.ipFamilyPolicy",
        "RequireDualStack",
        "this cluster is not configured for dual-stack services",
    ),
    case(
        service,
        {"spec.clusterIP": "None", "spec.type": "LoadBalancer"},
        "spec.clusterIP",
        "may not be set to 'None' for LoadBalancer services",
    ),
    case(
        service,
        {"spec.clusterIPs": ["None"], "spec.type": "NodePort"},
        "spec.clusterIP",
        "may not be set to 'None' for NodePort services",
    ),
    at(
        service,
        "status",
        {"loadBalancer": {"ingress": [{"ip": "lb.example.com"}]}},
        "must be a valid IP address",
        field="status.loadBalancer.ingress[0].ip",
    ),
    at(ip_address, "metadata.name", "ten", "must be a valid IP address"),
    at(ip_address, "metadata.name", "fd00::10", "must be an IPv4 address"),
    at(ip_address, "metadata.generateName", "10.96.0.1", "an IPAddress is named by its address"),
    at(ip_address, "spec.parentRef.name", "Web", "RFC 1123 subdomain"),
    at(ip_address, "spec.parentRef.namespace", "a.b", "RFC 1123 label"),
    at(node_port, "metadata.name", "web", "must be a port number between 1 and 65535"),
    at(node_port, "metadata.name", "030080", "without leading zeros"),
    at(node_port, "metadata.name", "70000", "must be a port number between 1 and 65535"),
    at(node_port, "metadata.generateName", "300", "a NodePort is named by its port number"),
    at(node_port, "spec.parentRef.name", "Web", "RFC 1123 subdomain"),
    case(
        service,
        {"spec.type": "NodePort", "spec.ports[0].nodePort": 0},
        "spec.ports[0].nodePort",
        "must be between 1 and 65535",
    ),
    case(
        service,
        {"spec.type": "NodePort", "spec.ports[0].nodePort": 30080, "spec.ports[1].nodePort": 30080},
        "spec.ports[1].nodePort",
        "Duplicate value: 30080",
    ),
    at(service, "spec.ports[1].name", "http", 'Duplicate value: "http"'),
    at(service, "spec.ports[1].name", DELETE, "Required value"),
    at(service, "spec.ports[0].name", "Http", "RFC 1123 label"),
    at(service, "spec.selector", {"app": "web site"}, "a valid label must be", field="spec.selector[app]"),
    at(
        endpoints,
        "subsets[0].addresses[0].ip",
        "300.1.1.1",
        'Invalid value: "300.1.1.1": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)',
    ),
    at(endpoints, "subsets[0].notReadyAddresses[0].ip", "web", "must be a valid IP address"),
    at(endpoints, "subsets[0].ports[1].port", 0, "must be between 1 and 65535"),
    at(endpoints, "subsets[0].ports[1].name", "http", "Duplicate value"),
    # HorizontalPodAutoscaler
    at(hpa, "spec.scaleTargetRef.name", "", "Required value"),
    at(hpa, "spec.scaleTargetRef.kind", "", "Required value"),
    at(hpa, "spec.minReplicas", 0, "Invalid value: 0: must be greater than or equal to 1"),
    case(
        hpa,
        {"spec.minReplicas": 2, "spec.maxReplicas": 1},
        "spec.maxReplicas",
        "Invalid value: 1: must be greater than or equal to minReplicas",
    ),
    at(hpa, "spec.maxReplicas", 0, "must be greater than 0"),
    at(
        hpa,
        "spec.metrics[0].resource",
        DELETE,
        "Required value: must populate information for the given metric source",
    ),
    at(
        hpa,
        "spec.metrics[0].pods",
        {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "1"}},
        "Forbidden: must populate the given metric source only",
        field="spec.metrics[0]",
    ),
    at(
        hpa,
        "spec.metrics[0].resource.name",
        "gpu",
        'Unsupported value: "gpu": supported values: "cpu", "memory"',
    ),
    at(hpa, "spec.metrics[0].resource.target.averageUtilization", DELETE, "Required value"),
    at(hpa, "spec.metrics[0].resource.target.averageUtilization", 0, "must be greater than 0"),
    at(
        hpa,
        "spec.metrics[0].resource.target",
        {"type": "Value", "value": "1"},
        "Unsupported value",
        field="spec.metrics[0].resource.target.type",
    ),
    at(hpa, "spec.metrics[1].resource.target.averageValue", "0", "must be positive"),
    at(hpa, "spec.metrics[2].pods.target.averageValue", "abc", "invalid quantity 'abc'"),
    at(hpa, "spec.metrics[2].pods.target.averageValue", DELETE, "Required value"),
    at(
        hpa,
        "spec.metrics[2].pods.target",
        {"type": "Utilization", "averageUtilization": 50},
        'supported values: "AverageValue"',
        field="spec.metrics[2].pods.target.type",
    ),
    at(hpa, "spec.metrics[2].pods.metric.name", "", "Required value"),
    at(hpa, f"{POLICY}.value", 0, "must be greater than zero"),
    at(hpa, f"{POLICY}.periodSeconds", 0, "must be greater than zero"),
    at(hpa, f"{POLICY}.periodSeconds", 1801, "must be less than or equal to 1800"),
    at(hpa, "spec.behavior.scaleDown.stabilizationWindowSeconds", 3601, "must be less than or equal to 3600"),
    at(hpa, "spec.behavior.scaleDown.stabilizationWindowSeconds", -1, "must be greater than or equal to 0"),
    # Node, Lease, Event
    at(node, "spec.taints[0].key", "bad key", 'Invalid value: "bad key"'),
    at(node, "spec.podCIDR", "10.244.1.0", "the prefix length is missing"),
    at(node, "spec.podCIDR", "10.244.1.5/24", "must be a valid IPv4 CIDR"),
    at(node, "spec.podCIDR", "fd00::/64", "must be a valid IPv4 CIDR"),
    at(node, "spec.podCIDR", "10.244.1.0/33", "must be a valid IPv4 CIDR"),
    at(node, "spec.podCIDRs", ["10.244.1.0/24", "x"], "must be a valid IPv4 CIDR", field="spec.podCIDRs[1]"),
    at(node, "spec.podCIDRs", ["10.244.1.0/24", "10.244.2.0/24"], "no more than one CIDR for each IP family"),
    at(node, "spec.podCIDRs", ["10.244.2.0/24"], "must match spec.podCIDR", field="spec.podCIDRs[0]"),
    at(node, "spec.taints[1].effect", "NoSchedule", "Duplicate value", field="spec.taints[1]"),
    at(node, "status.capacity.cpu", "four", "invalid quantity 'four'", field="status.capacity[cpu]"),
    at(
        node,
        "status.allocatable.memory",
        "-1",
        "must be greater than or equal to 0",
        field="status.allocatable[memory]",
    ),
    at(lease, "spec.leaseDurationSeconds", 0, "Invalid value: 0: must be greater than 0"),
    at(event, "involvedObject.kind", "", "Required value"),
    at(event, "involvedObject.name", DELETE, "Required value"),
    at(namespace, "metadata.name", "Team A", "RFC 1123 label"),
]


@pytest.mark.parametrize(
    ("make", "changes", "field", "fragment"),
    INVALID,
    ids=[f"{c[0].__name__}:{c[2]}:{i}" for i, c in enumerate(INVALID)],
)
def test_invalid(make: Callable[[], Manifest], changes: dict[str, Any], field: str, fragment: str) -> None:
    assert_cause(causes_of(patched(make(), changes)), field, fragment)


# -- structural checks, before any rule runs

STRUCTURAL: list[Case] = [
    at(deployment, f"{TEMPLATE}.volumes", [{"name": "data"}], "field not supported"),
    at(pod, f"{C}.securityContext", {}, "field not supported"),
    at(pod, "spex", {}, "field not supported"),
    at(deployment, "spec.replicas", "three", "Invalid value: string: expected integer"),
    at(pod, "spec.containers", {"name": "web"}, "expected array"),
    at(pod, "metadata.labels", {"app": 1}, "expected string", field="metadata.labels[app]"),
    at(pod, f"{C}.image", DELETE, "Required value"),
    at(deployment, "spec", DELETE, "Required value"),
    at(hpa, "spec.maxReplicas", DELETE, "Required value"),
    at(event, "involvedObject", DELETE, "Required value"),
    at(
        service,
        "spec.type",
        "ExternalName",
        'Unsupported value: "ExternalName": supported values: "ClusterIP", "LoadBalancer", "NodePort"',
    ),
    at(
        service,
        "spec.ipFamilies",
        ["IPv6"],
        'Unsupported value: "IPv6": supported values: "IPv4"',
        field="spec.ipFamilies[0]",
    ),
    at(service, "spec.ipFamilyPolicy", "DualStack", 'Unsupported value: "DualStack"'),
    at(ip_address, "spec.parentRef.resource", DELETE, "Required value"),
    at(pod, "spec.restartPolicy", "Sometimes", "Unsupported value"),
    at(pod, f"{REQUIRED_TERM}.operator", "Gt", 'Unsupported value: "Gt"'),
    at(node, "spec.taints[0].effect", DELETE, "Required value"),
]


@pytest.mark.parametrize(("make", "changes", "field", "fragment"), STRUCTURAL, ids=[c[2] for c in STRUCTURAL])
def test_structural(make: Callable[[], Manifest], changes: dict[str, Any], field: str, fragment: str) -> None:
    assert_cause(causes_of(patched(make(), changes)), field, fragment)


def test_messages_are_worded_as_kubernetes_words_them() -> None:
    causes = causes_of(patched(pod(), {"metadata.name": "Web_1"}))
    assert [str(cause) for cause in causes] == [
        'metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 label must consist of lower case '
        "alphanumeric characters or '-', and must start and end with an alphanumeric character "
        "(e.g. 'my-name', or '123-abc')"
    ]
    assert causes[0].reason == "FieldValueInvalid"


def test_every_cause_is_reported_together() -> None:
    manifest = patched(
        deployment(),
        {
            "metadata.name": "Web_1",
            "spec.replicas": -1,
            f"{TEMPLATE}.containers[0].image": "",
            f"{TEMPLATE}.containers[0].ports": [{"containerPort": 80}, {"containerPort": 70000}],
            f"{ROLLING}.maxUnavailable": "150%",
        },
    )
    with pytest.raises(Invalid) as err:
        decode_object(manifest)
    assert err.value.message == 'Deployment "Web_1" is invalid'
    assert [c.field for c in err.value.causes] == [
        "metadata.name",
        "spec.replicas",
        f"{TEMPLATE}.containers[0].image",
        f"{TEMPLATE}.containers[0].ports[1].containerPort",
        f"{ROLLING}.maxUnavailable",
    ]


def test_structural_causes_are_reported_together() -> None:
    manifest = patched(
        pod(), {"spec.volumes": [], "spec.containers[0].image": DELETE, "spec.restartPolicy": 1}
    )
    fields = {cause.field for cause in causes_of(manifest)}
    assert fields == {"spec.volumes", "spec.containers[0].image", "spec.restartPolicy"}


def test_unsupported_fields_and_rules_are_reported_together() -> None:
    manifest = patched(service(), {"spec.externalName": "db.example", "spec.ports[0].port": 0})
    fields = {cause.field for cause in causes_of(manifest)}
    assert fields == {"spec.externalName", "spec.ports[0].port"}
