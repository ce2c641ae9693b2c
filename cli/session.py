"""Connection settings shared by every command, and the async session they open.

Settings come from the global options (`steer --nats URL get pods`) or the environment
(`STEER_NATS`, `STEER_CREDS`), defaulting to the embedded cluster of `steer up`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS

from bus.client import Client
from bus.connection import DEFAULT_URL, Credentials, connect
from bus.store import Store


@dataclass
class Settings:
    servers: str = field(default_factory=lambda: os.environ.get("STEER_NATS", DEFAULT_URL))
    credentials: Credentials = field(
        default_factory=lambda: Credentials(creds_file=os.environ.get("STEER_CREDS"))
    )
    timeout: float = 10.0


settings = Settings()


@dataclass
class Session:
    nc: NATS
    client: Client

    @property
    def store(self) -> Store:
        """Direct store access, for watches (JetStream read permission needed)."""
        return Store(self.nc.jetstream(timeout=settings.timeout))


@contextlib.asynccontextmanager
async def session() -> AsyncIterator[Session]:
    nc = await connect(settings.servers, name="steer-cli", credentials=settings.credentials)
    try:
        yield Session(nc, Client(nc, timeout=settings.timeout))
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
