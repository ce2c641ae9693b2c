"""`steer controllers`: every built-in controller in one process, active only while it leads.

Several processes may run; the one holding the `steer-system/controllers` Lease reconciles, the
others wait to take over (docs/controllers.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any

from bus.client import Client
from bus.connection import Credentials, announce, close, connect, fail_when_closed
from bus.controller import Controller
from bus.informer import Informer
from bus.leader import LeaderElector
from bus.protocol import NODE_LEASE_NAMESPACE
from bus.resources import (
    Deployment,
    Endpoints,
    HorizontalPodAutoscaler,
    IPAddress,
    Lease,
    Node,
    NodePort,
    Pod,
    ReplicaSet,
    Service,
)
from bus.store import Store
from bus.unreadable import UnreadableReporter
from services.controllers.autoscaler import DEFAULT_SYNC_PERIOD, autoscaler_controller
from services.controllers.cidrs import NodeCIDRs
from services.controllers.deployment import DeploymentReconciler, deployment_keys, orphan_keys
from services.controllers.disruption import EvictionLimits
from services.controllers.endpoints import endpoints_controller
from services.controllers.garbagecollector import collected_informers, garbage_collector
from services.controllers.ipaddressrepair import ipaddress_repair_controller
from services.controllers.nodeipam import DEFAULT_CLUSTER_CIDR, DEFAULT_NODE_MASK, node_ipam_controller
from services.controllers.nodelifecycle import (
    DEFAULT_GRACE,
    DEFAULT_SETTLE,
    DEFAULT_TOLERATION_SECONDS,
    node_lifecycle_controller,
)
from services.controllers.nodeportrepair import nodeport_repair_controller
from services.controllers.podmetrics import PodMetricsCache
from services.controllers.replicaset import replicaset_controller
from services.controllers.servicelb import service_lb_controller

log = logging.getLogger(__name__)

COMPONENT = "steer-controllers"


@dataclass
class ControllersConfig:
    servers: str = "nats://127.0.0.1:4222"
    credentials: Credentials = field(default_factory=Credentials)
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    lease_duration: float = 15.0
    renew_every: float = 5.0
    workers: int = 4
    node_grace: float = DEFAULT_GRACE  # seconds without a heartbeat before a node is Unknown
    default_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS
    node_eviction_settle: float = DEFAULT_SETTLE  # seconds unhealthy before evictions may begin
    eviction_limits: EvictionLimits = field(default_factory=EvictionLimits)
    hpa_sync_period: float = DEFAULT_SYNC_PERIOD  # seconds between two syncs of an autoscaler
    allocate_node_cidrs: bool = True
    service_lb: bool = True
    node_cidrs: NodeCIDRs = field(
        default_factory=lambda: NodeCIDRs(IPv4Network(DEFAULT_CLUSTER_CIDR), DEFAULT_NODE_MASK)
    )


async def run(config: ControllersConfig) -> None:
    nc = await connect(
        config.servers, name=f"steer-controllers {config.instance}", credentials=config.credentials, wait=True
    )
    client = Client(nc)
    elector = LeaderElector(
        client,
        "controllers",
        config.instance,
        lease_duration=config.lease_duration,
        renew_every=config.renew_every,
        retry_every=config.renew_every,  # a standby checks as often as the leader renews
    )
    try:
        store = Store(nc.jetstream(timeout=5.0))
        await store.wait_for_buckets()
        reporter = UnreadableReporter(client.create, component=COMPONENT)
        store.on_unreadable(reporter)
        # One informer per kind, shared by every controller that reads it.
        replicasets: Informer[ReplicaSet] = Informer(store, ReplicaSet)
        pods: Informer[Pod] = Informer(store, Pod)
        deployments: Informer[Deployment] = Informer(store, Deployment)
        informers: list[Informer[Any]] = [replicasets, pods, deployments]

        replicaset = replicaset_controller(client, replicasets, pods, workers=config.workers)

        deployment = Controller(
            "deployment",
            DeploymentReconciler(client, deployments, replicasets, pods),
            workers=config.workers,
        )
        deployment.watch(deployments)
        deployment.watch(replicasets, deployment_keys(replicasets))
        deployment.watch(replicasets, orphan_keys(deployments))
        deployment.watch(pods, deployment_keys(replicasets))

        nodes: Informer[Node] = Informer(store, Node)
        leases: Informer[Lease] = Informer(store, Lease, NODE_LEASE_NAMESPACE)
        informers += [nodes, leases]
        nodelifecycle = node_lifecycle_controller(
            client,
            nodes,
            leases,
            pods,
            grace=config.node_grace,
            default_toleration_seconds=config.default_toleration_seconds,
            settle=config.node_eviction_settle,
            limits=config.eviction_limits,
            workers=config.workers,
        )

        services: Informer[Service] = Informer(store, Service)
        endpoints: Informer[Endpoints] = Informer(store, Endpoints)
        informers += [services, endpoints]
        endpoint = endpoints_controller(client, services, endpoints, pods, workers=config.workers)
        addresses: Informer[IPAddress] = Informer(store, IPAddress)
        informers.append(addresses)
        repair = ipaddress_repair_controller(client, addresses, services)
        node_ports: Informer[NodePort] = Informer(store, NodePort)
        informers.append(node_ports)
        node_port_repair = nodeport_repair_controller(client, node_ports, services)

        hpas: Informer[HorizontalPodAutoscaler] = Informer(store, HorizontalPodAutoscaler)
        informers.append(hpas)
        podmetrics = PodMetricsCache()  # kept by every candidate, so a new leader decides at once
        autoscaler = autoscaler_controller(
            client, hpas, pods, podmetrics, sync_period=config.hpa_sync_period, workers=config.workers
        )

        # The garbage collector watches every kind, sharing the informers above where they fit.
        collected = collected_informers(store, informers)
        informers += [i for i in collected.values() if i not in informers]
        garbagecollector = garbage_collector(client, collected, workers=config.workers)

        controllers = [
            replicaset,
            deployment,
            nodelifecycle,
            endpoint,
            repair,
            node_port_repair,
            autoscaler,
            garbagecollector,
        ]
        if config.allocate_node_cidrs:
            controllers.append(node_ipam_controller(client, nodes, config.node_cidrs))
        if config.service_lb:
            controllers.append(service_lb_controller(client, services, nodes, workers=config.workers))

        async def lead() -> None:
            async with asyncio.TaskGroup() as running:
                for controller in controllers:
                    running.create_task(controller.run())

        await announce(
            nc, "controllers", description="steersman controllers", metadata={"instance": config.instance}
        )
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(fail_when_closed(nc))
            tasks.create_task(reporter.run())
            for informer in informers:
                tasks.create_task(informer.run())
            tasks.create_task(podmetrics.run(nc))
            tasks.create_task(elector.run(lead))
    finally:
        await elector.release()
        await close(nc)
