"""Registering the Node and keeping it alive: the node's Lease is renewed every few seconds, its
status (with the Ready condition) rewritten now and then, as Kubernetes' kubelet does.

Everything goes through the node-scoped subjects, so the API knows which node is speaking.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import random
from collections.abc import Awaitable, Callable

from bus.client import Client
from bus.errors import AlreadyExists, Conflict, NotFound, SteerError
from bus.events import now
from bus.meta import ObjectMeta
from bus.protocol import NODE_LEASE_NAMESPACE
from bus.resources import Lease, Node
from bus.resources.cluster import NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo
from bus.resources.records import LeaseSpec
from nodeagent.config import AgentConfig

log = logging.getLogger(__name__)

AGENT_VERSION = "steersman/0.1.0"
CONFLICT_PAUSE_FIRST = 0.05  # seconds
CONFLICT_PAUSE_CAP = 5.0


def node_status(config: AgentConfig, runtime_version: str, previous: NodeStatus | None = None) -> NodeStatus:
    stamp = now()
    ready = NodeCondition(
        type="Ready",
        status="True",
        reason="AgentReady",
        message="node agent is posting ready status",
        last_heartbeat_time=stamp,
        last_transition_time=stamp,
    )
    if previous is not None:
        for condition in previous.conditions:
            if condition.type == "Ready" and condition.status == "True" and condition.last_transition_time:
                ready.last_transition_time = condition.last_transition_time
    uname = platform.uname()
    return NodeStatus(
        capacity=dict(config.capacity),
        allocatable=dict(config.capacity),
        conditions=[ready],
        addresses=[
            NodeAddress(type="InternalIP", address=config.address),
            NodeAddress(type="Hostname", address=config.name),
        ],
        node_info=NodeSystemInfo(
            container_runtime_version=runtime_version,
            kernel_version=uname.release,
            os_image=platform.platform(terse=True),
            operating_system=uname.system.lower(),
            architecture=uname.machine,
            kubelet_version=AGENT_VERSION,
        ),
    )


NETWORK_ANNOTATION = "steersman.io/network"


class Registration:
    def __init__(
        self,
        client: Client,
        config: AgentConfig,
        runtime_version: str,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.config = config
        self.runtime_version = runtime_version
        self.node: Node | None = None
        self.lease: Lease | None = None
        self._sleep = sleep

    async def register(self) -> Node:
        """Create our Node, or take over the existing one (keeping what users set, like cordons).

        A Conflict (the node controller changed the Node meanwhile: taints, conditions) is met by
        reading it again, after a pause that doubles (jittered) while Conflicts go on, so that a
        busy Node is not hammered."""
        pause = CONFLICT_PAUSE_FIRST
        while True:
            try:
                return await self._register()
            except Conflict:
                log.info("node %s changed while registering; again in %.2fs", self.config.name, pause)
                await self._sleep(pause * random.uniform(0.8, 1.2))
                pause = min(pause * 2, CONFLICT_PAUSE_CAP)

    async def _register(self) -> Node:
        labels = {"kubernetes.io/hostname": self.config.name, **self.config.labels}
        # Which network the node's pods get (docs/networking.md), for users and tools to see.
        annotations = {NETWORK_ANNOTATION: self.config.network}
        fresh = Node(
            metadata=ObjectMeta(name=self.config.name, labels=labels, annotations=annotations),
            spec=NodeSpec(taints=list(self.config.taints)),
            status=node_status(self.config, self.runtime_version),
        )
        try:
            self.node = await self.client.create(fresh)
        except AlreadyExists:
            current = await self.client.get(Node, self.config.name, "")
            current.metadata.labels = {**current.metadata.labels, **labels}
            current.metadata.annotations = {**current.metadata.annotations, **annotations}
            known = {(t.key, t.effect) for t in current.spec.taints}
            current.spec.taints += [t for t in self.config.taints if (t.key, t.effect) not in known]
            current = await self.client.update(current)
            current.status = node_status(self.config, self.runtime_version, current.status)
            self.node = await self.client.update_status(current)
        log.info("registered node %s (%s, %s)", self.config.name, self.config.address, self.runtime_version)
        return self.node

    async def keep_alive(self) -> None:
        """Renew the Lease and refresh the status until cancelled; failures are retried."""
        loop = asyncio.get_running_loop()
        next_status = loop.time() + self.config.status_interval
        renewed = loop.time()
        while True:
            try:
                await self.renew_lease()
                # Renewals were missed (a partition, a pause): the node controller may have
                # marked us Unknown, and only our status puts Ready back to True.
                if loop.time() - renewed > 2 * self.config.lease_renew:
                    next_status = loop.time()
                renewed = loop.time()
                if loop.time() >= next_status:
                    await self.refresh_status()
                    next_status = loop.time() + self.config.status_interval
            except SteerError as err:
                log.warning("heartbeat failed: %s", err)
            await asyncio.sleep(self.config.lease_renew)

    async def renew_lease(self) -> None:
        """One write per renewal: update the Lease we hold; re-read it only after a Conflict."""
        stamp = now()
        if self.lease is None:
            try:
                self.lease = await self.client.get(Lease, self.config.name, NODE_LEASE_NAMESPACE)
            except NotFound:
                spec = LeaseSpec(
                    holder_identity=self.config.name,
                    lease_duration_seconds=int(self.config.lease_duration),
                    acquire_time=stamp,
                    renew_time=stamp,
                )
                meta = ObjectMeta(name=self.config.name, namespace=NODE_LEASE_NAMESPACE)
                self.lease = await self.client.create(Lease(metadata=meta, spec=spec))
                return
        self.lease.spec.renew_time = stamp
        self.lease.spec.holder_identity = self.config.name
        self.lease.spec.lease_duration_seconds = int(self.config.lease_duration)
        try:
            self.lease = await self.client.update(self.lease)
        except (Conflict, NotFound):
            self.lease = None  # changed or expired under us: start again from the store

    async def refresh_status(self) -> None:
        node = await self.client.get(Node, self.config.name, "")
        node.status = node_status(self.config, self.runtime_version, node.status)
        self.node = await self.client.update_status(node)
