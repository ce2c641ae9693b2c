"""A node's view of every pod's network identity (nodeagent/network/podfeed.py) against the real
API: it lists at start, follows the API's `steer.feed.pods` feed, and outlives what a misbehaving
client publishes there."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS

from bus import subjects
from bus.client import Client
from bus.meta import ObjectMeta
from bus.resources import Pod
from bus.resources.pod import Container, PodSpec
from nodeagent.network.podfeed import PodAddresses
from tests.waiting import eventually


def pod(name: str, ns: str) -> Pod:
    spec = PodSpec(containers=[Container(name="main", image="busybox:local")], node_name="elsewhere")
    return Pod(metadata=ObjectMeta(name=name, namespace=ns, labels={"app": name}), spec=spec)


@pytest.fixture
async def addresses(nc: NATS, client: Client) -> AsyncIterator[PodAddresses]:
    followed = PodAddresses(nc, client, resync_interval=600)  # the feed alone after the first listing
    task = asyncio.create_task(followed.run())
    await asyncio.wait_for(followed.synced.wait(), 10)
    yield followed
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def names(addresses: PodAddresses, ns: str) -> set[str]:
    return {p.metadata.name for p in addresses.items() if p.metadata.namespace == ns}


async def test_it_follows_creates_and_deletes_through_malformed_messages(
    nc: NATS, client: Client, ns: str, addresses: PodAddresses
) -> None:
    await client.create(pod("before", ns))
    await eventually(lambda: _has(addresses, ns, {"before"}))
    stray = {
        "metadata": {"name": "stray", "namespace": ns, "resourceVersion": "x"},
        "spec": {"containers": 7},
    }
    for payload in (b"\x00junk", b"\xff", json.dumps(stray).encode(), b"[]", b"{}"):
        await nc.publish(subjects.cluster_feed("pods"), payload)
    await client.create(pod("after", ns))  # once it is seen, everything before it was dealt with
    await eventually(lambda: _has(addresses, ns, {"before", "after"}))
    await client.delete(Pod, "before", ns, grace_period_seconds=0)
    await eventually(lambda: _has(addresses, ns, {"after"}))
    assert all(not p.spec.containers[0].image for p in addresses.items() if p.metadata.namespace == ns)


async def _has(addresses: PodAddresses, ns: str, expected: set[str]) -> bool:
    return names(addresses, ns) == expected
