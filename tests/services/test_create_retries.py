"""A create sent again is the same create: the client chooses the new object's uid
(`Steer-Create-Uid`), so that the API answers a repeat whose first attempt was stored with that
object, instead of AlreadyExists or a second object (a retry after a timeout must neither fail
wrongly nor store twice)."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from nats.aio.client import Client as NATS

from bus import kinds, subjects
from bus.client import Client
from bus.errors import AlreadyExists, BadRequest
from bus.meta import ObjectMeta
from bus.protocol import CREATE_UID_HEADER, ERROR_CODE_HEADER
from bus.resources import Pod
from bus.resources.pod import Container, PodSpec
from services.api.admission import generated_name, prepare_create, requested_uid

PODS = kinds.BY_KIND["Pod"]


def pod(namespace: str, *, name: str = "", generate_name: str = "") -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, generate_name=generate_name, namespace=namespace),
        spec=PodSpec(containers=[Container(name="main", image="busybox:local")]),
    )


async def create(nc: NATS, obj: Pod, uid: str) -> tuple[bool, dict[str, object]]:
    """One raw create request with the uid header: (succeeded, reply body)."""
    body = msgspec.json.encode(obj)
    reply = await nc.request(
        subjects.api("create", PODS.plural, obj.metadata.namespace),
        body,
        timeout=10,
        headers={CREATE_UID_HEADER: uid},
    )
    failed = bool(reply.headers and ERROR_CODE_HEADER in reply.headers)
    return not failed, msgspec.json.decode(reply.data)


def test_a_chosen_uid_is_kept_and_names_the_same_object_every_time() -> None:
    uid = str(uuid.uuid4())
    names = set()
    for _ in range(3):
        obj = pod("default", generate_name="web-")
        prepare_create(obj, PODS, uid=uid)
        assert obj.metadata.uid == uid
        names.add(obj.metadata.name)
    assert len(names) == 1 and names.pop().startswith("web-")
    assert generated_name("web-") != generated_name("web-")  # without a uid: random, as before


@pytest.mark.parametrize("text", ["x", "1234", "' or 1=1"])
def test_a_create_uid_must_be_a_uuid(text: str) -> None:
    with pytest.raises(BadRequest):
        requested_uid(text)


async def test_a_create_sent_again_answers_the_stored_object(nc: NATS, client: Client, ns: str) -> None:
    uid = str(uuid.uuid4())
    ok, first = await create(nc, pod(ns, name="once"), uid)
    assert ok and first["metadata"]["uid"] == uid  # type: ignore[index]
    ok, again = await create(nc, pod(ns, name="once"), uid)
    assert ok and again == first
    ok, other = await create(nc, pod(ns, name="once"), str(uuid.uuid4()))
    assert not ok and other["reason"] == AlreadyExists.reason


async def test_a_generated_name_is_not_created_twice(nc: NATS, client: Client, ns: str) -> None:
    uid = str(uuid.uuid4())
    answers = [await create(nc, pod(ns, generate_name="gen-"), uid) for _ in range(3)]
    assert all(ok for ok, _ in answers)
    assert len({body["metadata"]["name"] for _, body in answers}) == 1  # type: ignore[index]
    assert len(await client.list(Pod, ns)) == 1


async def test_the_client_chooses_a_uid_for_every_create(client: Client, ns: str) -> None:
    first = await client.create(pod(ns, generate_name="c-"))
    second = await client.create(pod(ns, generate_name="c-"))
    assert first.metadata.uid != second.metadata.uid
    assert first.metadata.name != second.metadata.name
