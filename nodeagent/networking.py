"""What a node agent on the pod network runs besides its pods (docs/networking.md).

- Service forwarding in the kernel (`NftServiceProxy`) from the moment the agent starts: its
  rules outlive an agent, so a restarted one only brings them up to date;
- once the Node has a pod CIDR (the node IPAM controller gives it one soon after registration):
  the bridge, then cluster DNS on the gateway address, the NetworkPolicy rules of the pods and
  the routes to the pod CIDRs of nodes on other hosts.

A failure of any of these is logged and tried again with back-off; none of them stops the agent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS

from bus.client import Client
from bus.errors import Internal, NotFound, Timeout, Unavailable
from bus.resources import Node
from bus.store import Store
from nodeagent.config import AgentConfig
from nodeagent.dns import serve
from nodeagent.dns.source import MirrorSource
from nodeagent.network import noderoutes, policyenforcer
from nodeagent.network.nft import Nft, Table
from nodeagent.network.podfeed import PodAddresses
from nodeagent.network.podnetwork import PodNetwork
from nodeagent.network.serviceproxy import NftServiceProxy
from nodeagent.network.servicerules import Balancing
from nodeagent.proxy.feed import ServiceFeed

log = logging.getLogger(__name__)

RETRY_FIRST = 0.2
RETRY_CAP = 5.0
DNS_PORT = 53


def pod_network(config: AgentConfig) -> PodNetwork:
    return PodNetwork(
        config.name,
        config.data_dir / config.name,
        cluster_cidr=config.cluster_cidr,
        service_cidr=config.service_cidr,
    )


def service_forwarding(config: AgentConfig, feed: ServiceFeed) -> NftServiceProxy:
    """The kernel's Service forwarding: new connections in turn (the default) or at random. The
    kernel keeps no count of open connections, so least-connections balances in turn here."""
    balancing: Balancing = "random" if config.proxy == "random" else "round-robin"
    if config.proxy == "least-connections":
        log.warning("--proxy least-connections is the userspace proxy's; the kernel balances in turn")
    return NftServiceProxy(
        config.name,
        config.address,
        feed,
        Nft(),
        resync_interval=config.resync_interval,
        balancing=balancing,
        cluster_cidr=config.cluster_cidr,
    )


async def run(
    *,
    config: AgentConfig,
    nc: NATS,
    client: Client,
    network: PodNetwork,
    feed: ServiceFeed,
    ready: asyncio.Event,
    resync_now: asyncio.Event | None = None,
) -> None:
    """Bring the network up, set `ready` (pods may get their sandboxes), then serve DNS, enforce
    NetworkPolicies and route to the other nodes' pods until cancelled. Set `resync_now` to
    list every pod's network view again (after a reconnect)."""
    cidr = await _pod_cidr(client, config.name)
    await _retrying(lambda: network.start(cidr), f"make the pod network of {config.name}")
    ready.set()
    async with asyncio.TaskGroup() as tasks:
        dns = MirrorSource(feed.services, feed.endpoints)
        tasks.create_task(
            _retrying(
                lambda: serve(dns, network.gateway, DNS_PORT), f"serve cluster DNS on {network.gateway}"
            )
        )
        store = Store(nc.jetstream())
        pods = PodAddresses(nc, client, resync_interval=config.resync_interval, resync_now=resync_now)
        tasks.create_task(_retrying(pods.run, "follow the pods' addresses"))
        tasks.create_task(
            _retrying(
                lambda: policyenforcer.run(store, pods, node=config.name, pod_cidr=cidr),
                "enforce NetworkPolicies",
            )
        )
        tasks.create_task(
            _retrying(
                lambda: noderoutes.run(
                    store,
                    node=config.name,
                    pod_cidr=cidr,
                    cluster_cidr=config.cluster_cidr,
                    resync_interval=config.resync_interval,
                ),
                "route to the pods of other nodes",
            )
        )


async def _pod_cidr(client: Client, node: str) -> str:
    """The Node's pod CIDR, once it has one."""
    delay, said = RETRY_FIRST, False
    while True:
        try:
            found = await client.get(Node, node, "")
            cidr = found.spec.pod_cidr or next(iter(found.spec.pod_cidrs), "")
            if cidr:
                return cidr
            if not said:
                log.info("node %s waits for a pod CIDR (is the node IPAM controller running?)", node)
                said = True
        except (NotFound, Unavailable, Timeout, Internal):
            pass  # not registered yet, or the API is away: asked again
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))
        delay = min(delay * 2, RETRY_CAP)


async def _retrying(step: Callable[[], Awaitable[object]], what: str) -> None:
    """Do `step` (one that runs until cancelled, or one that finishes); when it fails, log it and
    do it again after a pause that doubles up to RETRY_CAP."""
    delay = RETRY_FIRST
    while True:
        try:
            await step()
            return
        except Exception as err:  # noqa: BLE001 (a kernel or bus failure: tried again, never fatal)
            log.error("cannot %s: %s; trying again in %.1fs", what, err, delay)
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))
        delay = min(delay * 2, RETRY_CAP)


async def clean_up(config: AgentConfig) -> None:
    """Remove everything the node's pod network made (for `steer down`): the pods' namespaces,
    links and addresses, the bridge, the nftables table."""
    await pod_network(config).remove_all()
    await Nft().delete_table(Table.for_node(config.name))
    log.info("removed the pod network of node %s", config.name)
