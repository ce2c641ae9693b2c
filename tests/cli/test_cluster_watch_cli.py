"""`steer get -w` and `steer events -w` connected to one server of a three-server cluster, while
that server is killed: they move to another server and go on from where they were, every pod
and every event shown once, none missed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bus.client import Client
from bus.events import make_event
from bus.meta import ObjectReference
from bus.resources import Event
from tests.cli.test_watch_faults import pod, steer_watch
from tests.natscluster import NatsCluster, api_replicas, connected, namespace

PODS_STREAM = "KV_steer-pods"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    with NatsCluster.running(tmp_path_factory.mktemp("cluster")) as cluster, api_replicas(cluster):
        yield cluster


async def test_watches_of_the_cli_go_on_when_their_server_dies(cluster: NatsCluster) -> None:
    async with connected(cluster.urls, "writer") as nc:
        client = Client(nc, timeout=3.0, retry_within=60.0)
        ns = await namespace(client)

        def event(message: str) -> Event:
            involved = ObjectReference(kind="Pod", namespace=ns, name="p", api_version="v1")
            return make_event(involved, reason="Tested", message=message, component="test")

        await client.create(pod("before", ns))
        await client.create(event("event-before"))
        victim = await cluster.stream_leader(nc.jetstream(), PODS_STREAM)
        url = cluster.url(victim)  # only the server that dies: the others are learnt from it
        async with (
            steer_watch(url, "get", "pods", "-n", ns, "-w") as pods,
            steer_watch(url, "events", "-n", ns, "-w") as events,
        ):
            await pods.until("before")
            await events.until("event-before")
            await cluster.kill(victim)
            for i in range(5):
                await client.create(pod(f"after-{i}", ns))
                await client.create(event(f"event-after-{i}"))
            for i in range(5):
                await pods.until(f"after-{i}")
                await events.until(f"event-after-{i}")
        await cluster.start_again(victim)
    for i in range(5):
        assert sum(f"after-{i} " in line for line in pods.lines) == 1, pods.lines
        assert sum(f"event-after-{i}" in line for line in events.lines) == 1, events.lines
    assert sum("before" in line for line in pods.lines) == 1
