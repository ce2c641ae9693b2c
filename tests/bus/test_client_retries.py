"""The client sends a request again while it fails in a way that passes: nats-py itself does not
retry "no responders" (no API replica subscribed, as while they reconnect to another server)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bus import natsserver
from bus.client import Client
from bus.connection import connect
from bus.errors import AlreadyExists, Conflict, Invalid, SteerError, Timeout, Unavailable
from bus.resources import Namespace
from bus.retrying import ReplyLost, retryable
from tests.conftest import start_service


@pytest.mark.parametrize(
    ("verb", "error", "again"),
    [
        ("get", Unavailable("x"), True),
        ("update", Unavailable("x"), True),  # nothing was done: safe for any verb
        ("get", Timeout("x"), True),
        ("list", Timeout("x"), True),
        ("create", Timeout("x"), True),  # it carries its uid: a repeat is recognised
        ("update", Timeout("x"), False),  # may have been applied: the caller decides
        ("patch", Timeout("x"), False),
        ("delete", Timeout("x"), False),
        ("create", AlreadyExists("x"), False),
        ("update", Conflict("x"), False),
        ("create", Invalid("x"), False),
        ("get", ReplyLost("x"), True),  # the connection went while the reply was awaited
        ("create", ReplyLost("x"), True),
        ("update", ReplyLost("x"), False),
    ],
)
def test_what_is_sent_again(verb: str, error: SteerError, again: bool) -> None:
    assert retryable(verb, error) is again


async def test_a_request_waits_for_an_api_replica_to_answer(tmp_path: Path) -> None:
    server = await asyncio.to_thread(natsserver.start, tmp_path / "nats")
    try:
        nc = await connect(server.url, name="test")
        try:
            impatient = Client(nc, timeout=2.0, retry_within=0.5)
            sent = time.monotonic()
            with pytest.raises(Unavailable, match="no API server is running"):
                await impatient.get(Namespace, "default", "")
            assert impatient.retries > 0 and time.monotonic() - sent < 2.0

            patient = Client(nc, timeout=2.0, retry_within=60.0)
            waiting = asyncio.create_task(patient.get(Namespace, "default", ""))
            api = start_service("services.api", "--nats", server.url, log=tmp_path / "api.log")
            try:
                found = await asyncio.wait_for(waiting, 60)
                assert found.metadata.name == "default" and patient.retries > 0
            finally:
                api.terminate()
                await asyncio.to_thread(api.wait, 10)
        finally:
            await nc.close()
    finally:
        await asyncio.to_thread(server.stop)
