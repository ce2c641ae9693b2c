"""The API's namespace cache through a connection that drops: it never answers from a cache that
has stopped following the store, and it follows it again, without retrying in a loop, once the
connection is back."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from bus.connection import close, connect
from bus.errors import Timeout, Unavailable
from bus.events import now
from bus.meta import ObjectMeta
from bus.resources import Namespace
from bus.store import Store
from services.api.namespaces import NamespaceCache
from tests.faults import Relay


async def test_a_cache_cut_off_never_answers_stale_and_catches_up(
    nats_url: str, store: Store, api_servers: object, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"t-{uuid.uuid4().hex[:10]}"
    await store.create(Namespace(metadata=ObjectMeta(name=name)))
    caplog.set_level(logging.INFO)
    async with Relay(nats_url) as relay:
        nc = await connect(relay.url, name="test-namespaces")
        cache = NamespaceCache(Store(nc.jetstream()))
        liveness: asyncio.Queue[bool] = asyncio.Queue()
        cache.informer.on_live(liveness.put_nowait)
        running = asyncio.create_task(cache.run())
        try:
            assert await asyncio.wait_for(liveness.get(), 30) is True
            assert await cache.is_terminating(name) is False
            async with relay.cut():
                assert await asyncio.wait_for(liveness.get(), 30) is False
                namespace = await store.get(Namespace, "", name)
                namespace.metadata.deletion_timestamp = now()
                await store.update(namespace)
                # Not "False" from what it saw before: it cannot know (its store is unreachable).
                with pytest.raises((Unavailable, Timeout)):
                    await cache.is_terminating(name)
            assert await asyncio.wait_for(liveness.get(), 30) is True
            assert await cache.is_terminating(name) is True
        finally:
            running.cancel()
            await close(nc)
    assert not [r for r in caplog.records if "watch failed" in r.getMessage()]
