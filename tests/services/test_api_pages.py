"""Lists of any size: the API serves them in pages that fit a reply (`limit`, `continue`), and the
client joins the pages, so a list larger than the server's max_payload still works."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client as NATS

from bus import kinds, subjects
from bus.client import Client
from bus.errors import BadRequest
from bus.resources import Pod
from tests.services.test_api import _raw_pod, pod

PODS = kinds.BY_KIND["Pod"]


async def list_page(nc: NATS, namespace: str, **request: Any) -> dict[str, Any]:
    reply = await nc.request(
        subjects.api("list", "pods", namespace), msgspec.json.encode(request), timeout=10
    )
    page: dict[str, Any] = msgspec.json.decode(reply.data)
    assert page.get("kind") == "PodList", page
    return page


async def test_a_list_larger_than_the_max_payload_is_served_in_pages(
    client: Client, nc: NATS, ns: str
) -> None:
    """Seven pods of 700 KB are 4.9 MB: more than one reply (4 MiB) can carry."""
    for i in range(7):
        raw = _raw_pod(f"big-{i}")
        raw["spec"]["containers"][0]["command"] = ["x" * (700 * 1024)]
        await client.create_raw(PODS, ns, raw)
    first = await list_page(nc, ns)
    assert 0 < len(first["items"]) < 7 and first["metadata"]["continue"]
    assert first["metadata"]["remainingItemCount"] == 7 - len(first["items"])
    listed = await client.list(Pod, ns)
    assert [p.metadata.name for p in listed] == [f"big-{i}" for i in range(7)]


async def test_pages_of_a_given_size_cover_every_object_once(client: Client, ns: str) -> None:
    names = sorted(f"p{i:02d}" for i in range(25))
    await asyncio.gather(*(client.create(pod(name, ns)) for name in names))
    pages = [page async for page in client.list_pages(PODS, ns, page_size=10)]
    assert [len(items) for items, _ in pages] == [10, 10, 5]
    assert [p.metadata.name for items, _ in pages for p in items] == names
    assert len({version for _, version in pages}) == 1  # every page reports the first one's
    everything, _ = await client.list_kind(PODS, ns, page_size=7)
    assert [p.metadata.name for p in everything] == names


async def test_objects_created_and_deleted_between_pages(client: Client, nc: NATS, ns: str) -> None:
    for name in ("b", "d", "f", "h"):
        await client.create(pod(name, ns))
    first = await list_page(nc, ns, limit=2)
    assert [item["metadata"]["name"] for item in first["items"]] == ["b", "d"]
    await client.create(pod("a", ns))  # before the cursor: this listing has gone past it
    await client.create(pod("e", ns))  # after it: the next page shows it
    await client.delete(Pod, "f", ns)
    rest = await list_page(nc, ns, limit=10, **{"continue": first["metadata"]["continue"]})
    assert [item["metadata"]["name"] for item in rest["items"]] == ["e", "h"]
    assert "continue" not in rest["metadata"]
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"continue": "not-a-token"}, "continue"),
        ({"continue": "eyJydiI6IDF9"}, "continue"),  # base64 JSON, but not one of ours
        ({"continue": "x" * 5000}, "continue"),
        ({"limit": -1}, "limit"),
    ],
)
async def test_bad_list_requests_are_bad_requests_naming_the_field(
    nc: NATS, api_servers: object, ns: str, request_body: dict[str, Any], field: str
) -> None:
    reply = await nc.request(subjects.api("list", "pods", ns), msgspec.json.encode(request_body), timeout=5)
    status = msgspec.json.decode(reply.data)
    assert status["reason"] == "BadRequest"
    assert [cause["field"] for cause in status["details"]["causes"]] == [field]


async def test_a_node_lists_its_pods_in_pages(client: Client, nc: NATS, ns: str) -> None:
    for i in range(5):
        bound = pod(f"on-{i}", ns)
        bound.spec.node_name = "paged-node"
        await client.create(bound)
    await client.create(pod("elsewhere", ns))
    agent = Client(nc, node="paged-node")
    pages = [items async for items, _ in agent.list_pages(PODS, ns, page_size=2)]
    assert [[p.metadata.name for p in items] for items in pages] == [
        ["on-0", "on-1"],
        ["on-2", "on-3"],
        ["on-4"],
    ]
    with pytest.raises(BadRequest):
        await agent.list_kind(PODS, ns, page_size=-5)
