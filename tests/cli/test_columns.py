"""`steer get` columns: kubectl's ages, pod statuses, and the NAMESPACE and wide columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bus import kinds
from bus.meta import ObjectMeta
from bus.resources import IPAddress, Node, Pod, Service
from bus.resources.cluster import NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo
from bus.resources.networking import (
    IPAddressSpec,
    LoadBalancerIngress,
    LoadBalancerStatus,
    ParentReference,
    ServicePort,
    ServiceSpec,
    ServiceType,
)
from bus.resources.pod import (
    Container,
    ContainerState,
    ContainerStateRunning,
    ContainerStateTerminated,
    ContainerStateWaiting,
    ContainerStatus,
    PodSpec,
    PodStatus,
)
from cli.columns import age, header, pod_status, row

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (0.9, "0s"),
        (59, "59s"),
        (60, "60s"),
        (119, "119s"),
        (120, "2m"),
        (179, "2m"),
        (3599, "59m"),
        (7199, "119m"),
        (7200, "2h"),
        (10799, "2h"),
        (86399, "23h"),
        (86400, "1d"),
        (172799, "1d"),
        (86400 * 400, "400d"),
        (-1, "0s"),
        (-86400, "0s"),
    ],
)
def test_age(seconds: float, shown: str) -> None:
    assert age(NOW - timedelta(seconds=seconds), now=NOW) == shown


def test_age_unknown() -> None:
    assert age(None, now=NOW) == "<unknown>"


def test_age_defaults_to_the_clock() -> None:
    assert age(datetime.now(UTC) - timedelta(days=3, hours=1)) == "3d"


def waiting(reason: str) -> ContainerState:
    return ContainerState(waiting=ContainerStateWaiting(reason=reason))


def terminated(reason: str, code: int = 0) -> ContainerState:
    return ContainerState(terminated=ContainerStateTerminated(exit_code=code, reason=reason))


RUNNING = ContainerState(running=ContainerStateRunning(started_at=NOW))


def pod(
    *states: ContainerState,
    phase: str = "Running",
    reason: str = "",
    deleting: bool = False,
) -> Pod:
    return Pod(
        metadata=ObjectMeta(name="web", namespace="shop", deletion_timestamp=NOW if deleting else None),
        spec=PodSpec(containers=[Container(name=f"c{i}", image="nginx") for i in range(len(states))]),
        status=PodStatus(
            phase=phase,
            reason=reason,
            container_statuses=[ContainerStatus(name=f"c{i}", state=s) for i, s in enumerate(states)],
        ),
    )


@pytest.mark.parametrize(
    ("obj", "status"),
    [
        (pod(phase="Pending"), "Pending"),
        (pod(RUNNING), "Running"),
        (pod(RUNNING, phase="Succeeded"), "Succeeded"),
        (pod(waiting("ContainerCreating"), phase="Pending"), "ContainerCreating"),
        (pod(waiting("CrashLoopBackOff")), "CrashLoopBackOff"),
        (pod(RUNNING, waiting("ImagePullBackOff")), "ImagePullBackOff"),
        (pod(waiting("")), "Running"),
        (pod(terminated("Completed"), phase="Succeeded"), "Completed"),
        (pod(terminated("Error", 1), phase="Failed"), "Error"),
        (pod(terminated(""), phase="Failed"), "Failed"),
        (pod(waiting("ErrImagePull"), terminated("OOMKilled", 137)), "ErrImagePull"),
        (pod(phase="Failed", reason="Evicted"), "Evicted"),
        (pod(RUNNING, phase="Failed", reason="Evicted"), "Evicted"),
        (pod(RUNNING, deleting=True), "Terminating"),
        (pod(waiting("CrashLoopBackOff"), deleting=True), "Terminating"),
    ],
)
def test_pod_status(obj: Pod, status: str) -> None:
    assert pod_status(obj) == status


POD_INFO = kinds.BY_KIND["Pod"]
NODE_INFO = kinds.BY_KIND["Node"]


@pytest.mark.parametrize(
    ("info", "wide", "all_namespaces", "columns"),
    [
        (POD_INFO, False, False, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]),
        (POD_INFO, False, True, ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]),
        (POD_INFO, True, False, ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]),
        (POD_INFO, True, True, ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]),
        (NODE_INFO, False, True, ["NAME", "STATUS", "AGE", "VERSION"]),
        (NODE_INFO, True, True, ["NAME", "STATUS", "AGE", "VERSION", "INTERNAL-IP", "CONTAINER-RUNTIME"]),
    ],
)
def test_header(info: kinds.KindInfo, wide: bool, all_namespaces: bool, columns: list[str]) -> None:
    assert header(info, wide=wide, all_namespaces=all_namespaces) == columns


def full_pod() -> Pod:
    obj = pod(RUNNING, waiting("CrashLoopBackOff"))
    obj.metadata.creation_timestamp = datetime.now(UTC) - timedelta(days=3, hours=1)
    obj.spec.node_name = "n1"
    obj.status.pod_ip = "10.0.0.7"
    obj.status.container_statuses[0].ready = True
    obj.status.container_statuses[0].restart_count = 2
    obj.status.container_statuses[1].restart_count = 5
    return obj


@pytest.mark.parametrize(
    ("wide", "all_namespaces", "cells"),
    [
        (False, False, ["web", "1/2", "CrashLoopBackOff", "7", "3d"]),
        (False, True, ["shop", "web", "1/2", "CrashLoopBackOff", "7", "3d"]),
        (True, False, ["web", "1/2", "CrashLoopBackOff", "7", "3d", "10.0.0.7", "n1"]),
        (True, True, ["shop", "web", "1/2", "CrashLoopBackOff", "7", "3d", "10.0.0.7", "n1"]),
    ],
)
def test_pod_row(wide: bool, all_namespaces: bool, cells: list[str]) -> None:
    obj = full_pod()
    assert row(obj, wide=wide, all_namespaces=all_namespaces) == cells
    assert len(cells) == len(header(POD_INFO, wide=wide, all_namespaces=all_namespaces))


def test_unscheduled_pod_row_wide() -> None:
    obj = pod(phase="Pending")
    assert row(obj, wide=True, all_namespaces=True) == [
        "shop",
        "web",
        "0/0",
        "Pending",
        "0",
        "<unknown>",
        "<none>",
        "<none>",
    ]


@pytest.mark.parametrize(
    ("conditions", "unschedulable", "status"),
    [
        ([NodeCondition(type="Ready", status="True")], False, "Ready"),
        ([NodeCondition(type="Ready", status="False")], False, "NotReady"),
        ([NodeCondition(type="Ready", status="Unknown")], True, "NotReady,SchedulingDisabled"),
        ([], False, "Unknown"),
    ],
)
def test_node_row_has_no_namespace_column(
    conditions: list[NodeCondition], unschedulable: bool, status: str
) -> None:
    node = Node(
        metadata=ObjectMeta(name="n1"),
        status=NodeStatus(
            conditions=conditions,
            addresses=[
                NodeAddress(type="Hostname", address="h"),
                NodeAddress(type="InternalIP", address="10.1.1.1"),
            ],
            node_info=NodeSystemInfo(kubelet_version="v0.1.0", container_runtime_version="docker://24"),
        ),
    )
    node.spec.unschedulable = unschedulable
    cells = row(node, wide=True, all_namespaces=True)
    assert cells == ["n1", status, "<unknown>", "v0.1.0", "10.1.1.1", "docker://24"]
    assert len(cells) == len(header(NODE_INFO, wide=True, all_namespaces=True))


SERVICE_INFO = kinds.BY_KIND["Service"]


def svc(
    type_: ServiceType = "ClusterIP",
    cluster_ip: str = "10.96.0.12",
    ingress: tuple[str, ...] = (),
    node_port: int = 0,
) -> Service:
    obj = Service(
        metadata=ObjectMeta(
            name="web", namespace="shop", creation_timestamp=datetime.now(UTC) - timedelta(hours=5)
        ),
        spec=ServiceSpec(
            ports=[
                ServicePort(port=80, node_port=node_port or None),
                ServicePort(port=53, protocol="UDP", name="d"),
            ],
            type=type_,
            cluster_ip=cluster_ip,
            selector={"app": "web"},
        ),
    )
    obj.status.load_balancer = LoadBalancerStatus(ingress=[LoadBalancerIngress(ip=ip) for ip in ingress])
    return obj


@pytest.mark.parametrize(
    ("obj", "cells"),
    [
        (svc(), ["web", "ClusterIP", "10.96.0.12", "<none>", "80/TCP,53/UDP", "5h"]),
        (svc(cluster_ip="None"), ["web", "ClusterIP", "None", "<none>", "80/TCP,53/UDP", "5h"]),
        (svc(cluster_ip=""), ["web", "ClusterIP", "<none>", "<none>", "80/TCP,53/UDP", "5h"]),
        (
            svc("NodePort", node_port=30080),
            ["web", "NodePort", "10.96.0.12", "<none>", "80:30080/TCP,53/UDP", "5h"],
        ),
        (svc("LoadBalancer"), ["web", "LoadBalancer", "10.96.0.12", "<pending>", "80/TCP,53/UDP", "5h"]),
        (
            svc("LoadBalancer", ingress=("127.0.0.11", "127.0.0.12"), node_port=31000),
            ["web", "LoadBalancer", "10.96.0.12", "127.0.0.11,127.0.0.12", "80:31000/TCP,53/UDP", "5h"],
        ),
    ],
)
def test_service_row(obj: Service, cells: list[str]) -> None:
    assert header(SERVICE_INFO, wide=False, all_namespaces=False) == [
        "NAME",
        "TYPE",
        "CLUSTER-IP",
        "EXTERNAL-IP",
        "PORT(S)",
        "AGE",
    ]
    assert row(obj, wide=False, all_namespaces=False) == cells
    assert row(obj, wide=True, all_namespaces=True) == ["shop", *cells, "app=web"]
    assert header(SERVICE_INFO, wide=True, all_namespaces=True)[-1] == "SELECTOR"


def test_ip_address_row() -> None:
    record = IPAddress(
        metadata=ObjectMeta(name="10.96.0.12"),
        spec=IPAddressSpec(parent_ref=ParentReference(resource="services", namespace="shop", name="web")),
    )
    info = kinds.BY_KIND["IPAddress"]
    assert header(info, wide=False, all_namespaces=True) == ["NAME", "PARENTREF", "AGE"]
    assert row(record, wide=False, all_namespaces=True) == ["10.96.0.12", "services/shop/web", "<unknown>"]
