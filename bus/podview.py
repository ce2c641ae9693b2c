"""A pod as the network sees it: what a node's NetworkPolicy enforcer needs of every pod in the
cluster, and nothing more.

A node's credential reads only the pods bound to it in full (their environment and commands are
its business alone); of the others it gets this view, from the API's `view: network` list and
the `steer.feed.pods` feed (docs/protocol.md): identity, labels, node, network mode, named
container ports, phase and addresses. No environment, command, image, volume or annotation.
"""

from __future__ import annotations

from bus.meta import ObjectMeta
from bus.resources import Pod
from bus.resources.pod import Container, PodSpec, PodStatus

NETWORK_VIEW = "network"


def network_view(pod: Pod) -> Pod:
    meta = pod.metadata
    containers = [
        Container(name=container.name, image="", ports=list(container.ports))
        for container in pod.spec.containers
    ]
    status = pod.status
    return Pod(
        metadata=ObjectMeta(
            name=meta.name,
            namespace=meta.namespace,
            uid=meta.uid,
            resource_version=meta.resource_version,
            creation_timestamp=meta.creation_timestamp,
            deletion_timestamp=meta.deletion_timestamp,
            labels=dict(meta.labels),
        ),
        spec=PodSpec(containers=containers, node_name=pod.spec.node_name, host_network=pod.spec.host_network),
        status=PodStatus(
            phase=status.phase,
            host_ip=status.host_ip,
            pod_ip=status.pod_ip,
            pod_ips=list(status.pod_ips),
            host_ips=list(status.host_ips),
        ),
    )
