"""Kubernetes' limits at the API: what breaks them is refused before anything is stored."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from nats.aio.client import Client as NATS

from bus import kinds, subjects
from bus.client import Client
from bus.errors import BadRequest, Invalid, NotFound, TooLarge
from bus.protocol import MAX_OBJECT_BYTES
from bus.resources import Deployment, Pod
from tests.services.test_api import _raw_pod, deployment

DEPLOYMENTS = kinds.BY_KIND["Deployment"]
PODS = kinds.BY_KIND["Pod"]


def raw_deployment(name: str, **spec: Any) -> dict[str, Any]:
    raw: dict[str, Any] = msgspec.to_builtins(deployment(name, "unused"))
    raw["metadata"].pop("namespace")
    raw["spec"].update(spec)
    return raw


@pytest.mark.parametrize("replicas", [18446744073709551616, 10**30, 2**31])
async def test_replicas_beyond_int32_are_invalid_and_not_stored(
    client: Client, ns: str, replicas: int
) -> None:
    with pytest.raises(Invalid) as caught:
        await client.create_raw(DEPLOYMENTS, ns, raw_deployment("huge", replicas=replicas))
    assert [c.field for c in caught.value.causes] == ["spec.replicas"]
    assert "2147483647" in caught.value.causes[0].message
    with pytest.raises(NotFound):
        await client.get(Deployment, "huge", ns)


async def test_a_patch_to_huge_replicas_changes_nothing(client: Client, ns: str) -> None:
    created = await client.create(deployment("web", ns))
    with pytest.raises(Invalid):
        await client.patch(Deployment, "web", {"spec": {"replicas": 10**30}}, ns)
    assert await client.get(Deployment, "web", ns) == created


async def test_huge_probe_periods_and_nul_bytes_are_reported_together(client: Client, ns: str) -> None:
    raw = _raw_pod("probed")
    raw["spec"]["containers"][0].update(
        command=["sh", "-c", "sleep 1\x00"],
        env=[{"name": "A", "value": "\x00"}],
        livenessProbe={"exec": {"command": ["true"]}, "periodSeconds": 10**12},
    )
    with pytest.raises(Invalid) as caught:
        await client.create_raw(PODS, ns, raw)
    fields = {c.field for c in caught.value.causes}
    assert fields == {"spec.containers[0].livenessProbe.periodSeconds"}  # a wrong type stops the rest
    del raw["spec"]["containers"][0]["livenessProbe"]
    with pytest.raises(Invalid) as caught:
        await client.create_raw(PODS, ns, raw)
    fields = {c.field for c in caught.value.causes}
    assert fields == {"spec.containers[0].command[2]", "spec.containers[0].env[0].value"}
    with pytest.raises(NotFound):
        await client.get(Pod, "probed", ns)


async def test_delete_grace_period_beyond_int64_is_a_bad_request(nc: NATS, client: Client, ns: str) -> None:
    await client.create_raw(PODS, ns, _raw_pod("kept"))
    body = msgspec.json.encode({"name": "kept", "gracePeriodSeconds": 2**64})
    reply = await nc.request(subjects.api("delete", "pods", ns), body, timeout=5)
    assert msgspec.json.decode(reply.data)["reason"] == "BadRequest"
    with pytest.raises(BadRequest) as caught:
        await client.delete(Pod, "kept", ns, grace_period_seconds=-1, resource_version="x")
    assert [c.field for c in caught.value.causes] == ["resourceVersion", "gracePeriodSeconds"]
    assert await client.get(Pod, "kept", ns)


async def test_a_request_over_the_servers_max_payload_is_too_large_naming_both_sizes(
    client: Client, nc: NATS, ns: str
) -> None:
    raw = _raw_pod("huge")
    raw["metadata"]["annotations"] = {"blob": "x" * (nc.max_payload + 10)}
    with pytest.raises(TooLarge) as caught:
        await client.create_raw(PODS, ns, raw)
    message = caught.value.message
    assert f"at most {nc.max_payload} bytes" in message and "max_payload" in message
    assert message.startswith("request is ") and int(message.split()[2]) > nc.max_payload


async def test_an_object_that_would_grow_past_the_limit_is_not_written(client: Client, ns: str) -> None:
    """Spec and status come from different requests, each under the limit; together they are not."""
    raw = _raw_pod("growing")
    raw["spec"]["containers"][0]["command"] = ["x" * (MAX_OBJECT_BYTES * 2 // 3)]
    await client.create_raw(PODS, ns, raw)
    report = {**_raw_pod("growing"), "status": {"message": "y" * (MAX_OBJECT_BYTES * 2 // 3)}}
    with pytest.raises(TooLarge, match='Pod "growing" would be'):
        await client.request("status", PODS, ns, msgspec.json.encode(report))
    assert (await client.get(Pod, "growing", ns)).status.message == ""


async def test_an_object_with_thousands_of_causes_gets_a_bounded_answer(client: Client, ns: str) -> None:
    """Each bad label is a cause of a few hundred bytes: 20,000 of them are more than a reply can
    carry. The answer keeps the first causes and counts the rest."""
    raw = _raw_pod("labelled")
    raw["metadata"]["labels"] = {f"bad key {i}": "-" for i in range(20_000)}
    with pytest.raises(Invalid) as caught:
        await client.create_raw(PODS, ns, raw)
    causes = caught.value.causes
    assert 100 < len(causes) < 40_000
    assert causes[0].field == "metadata.labels" and "bad key 0" in causes[0].message
    assert causes[-1].message.startswith("... and ") and causes[-1].message.endswith(" more causes")
    with pytest.raises(NotFound):
        await client.get(Pod, "labelled", ns)
