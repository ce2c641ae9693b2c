"""JetStream encryption at rest (docs/operations.md): a server whose `jetstream {}` block says
`cipher: chachapoly` and takes its key from the environment serves the API as any other, and
what it writes to disk does not hold the objects in clear."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bus import natsserver
from bus.client import Client
from bus.connection import connect, link
from bus.errors import Unavailable
from bus.meta import ObjectMeta
from bus.resources import Namespace
from tests.conftest import start_service, wait_for_components

KEY_ENV = "STEER_JS_KEY"


def encrypted_config(directory: Path) -> Path:
    """The repository's nats.conf with encryption at rest, its key read from $STEER_JS_KEY."""
    text = natsserver.REPO_CONF.read_text()
    assert "jetstream {" in text
    config = directory / "encrypted.conf"
    settings = f"jetstream {{\n  cipher: chachapoly\n  key: ${KEY_ENV}\n"
    config.write_text(text.replace("jetstream {", settings, 1))
    return config


@dataclass
class Encrypted:
    server: natsserver.NatsServer
    key: str


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Encrypted]:
    """A server started with the key in its environment, as a unit file or a secret would give it."""
    data = tmp_path_factory.mktemp("encrypted")
    key = secrets.token_hex(32)
    with keyed(key):
        server = natsserver.start(data, config=encrypted_config(data), log_file=data / "nats.log")
    api = start_service("services.api", "--nats", server.url, log=data / "api.log")
    try:
        asyncio.run(wait_for_components(server.url, "steer-api", 1))
        yield Encrypted(server, key)
    finally:
        api.terminate()
        api.wait(10)
        server.stop()


@contextlib.contextmanager
def keyed(key: str) -> Iterator[None]:
    """The key in the environment while a server starts (the child keeps its copy); nothing else
    in the tests sees it."""
    before = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = key
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(KEY_ENV, None)
        else:
            os.environ[KEY_ENV] = before


async def test_the_api_works_on_an_encrypted_store_and_nothing_is_stored_in_clear(
    encrypted: Encrypted,
) -> None:
    server = encrypted.server
    log = (server.data_dir / "nats.log").read_text()
    assert re.search(r"Encryption:\s+ChaCha20-Poly1305", log), "the server does not say it encrypts"
    marker = f"secret-{uuid.uuid4().hex[:12]}"
    nc = await connect(server.url, name="test-encrypted")
    try:
        client = Client(nc)
        await client.create(Namespace(metadata=ObjectMeta(name=marker, labels={"note": marker})))
        assert (await client.get(Namespace, marker, "")).metadata.labels == {"note": marker}

        # Stopped, the server has written everything out: none of it may hold the object in clear.
        await asyncio.to_thread(server.stop)
        stored = [p for p in (server.data_dir / "jetstream").rglob("*") if p.is_file()]
        assert any("KV_steer-namespaces" in str(p) for p in stored), "the server stored nothing"
        assert not [p for p in stored if marker.encode() in p.read_bytes()], "an object is stored in clear"

        # Started again with the same key, it reads its store back.
        with keyed(encrypted.key):
            await asyncio.to_thread(server.start_again)
        await wait_for_components(server.url, "steer-api", 1)  # the API is back on the bus
        async with asyncio.timeout(30):
            await link(nc).connected.wait()  # and so are we
        again = await client.get(Namespace, marker, "")
        assert again.metadata.labels == {"note": marker}
    finally:
        await nc.close()


def test_the_server_refuses_to_start_without_its_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    config = encrypted_config(tmp_path)
    with pytest.raises(Unavailable) as failed:
        natsserver.start(tmp_path, config=config, log_file=tmp_path / "nats.log", timeout=15)
    assert "nats-server exited" in failed.value.message and KEY_ENV in failed.value.message
