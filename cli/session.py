"""Connection settings shared by every command, and the async session they open.

Settings come from the global options (`steer --nats URL get pods`) or the environment
(`STEER_NATS`, `STEER_CREDS`, `STEER_TLS_CA`, `STEER_TLS_CERT`, `STEER_TLS_KEY`), defaulting
to the embedded cluster of `steer up`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS

from bus import tlsclient
from bus.client import Client
from bus.connection import DEFAULT_URL, Credentials, connect
from bus.store import Store
from cli.errors import stderr


@dataclass
class Settings:
    servers: str = field(default_factory=lambda: os.environ.get("STEER_NATS", DEFAULT_URL))
    credentials: Credentials = field(
        default_factory=lambda: Credentials(
            creds_file=os.environ.get("STEER_CREDS"), tls=tlsclient.from_env()
        )
    )
    timeout: float = 10.0


settings = Settings()


def warn(text: str) -> None:
    """A warning from the API or the store, as kubectl prints one."""
    stderr.print(f"Warning: {text}", markup=False)


@dataclass
class Session:
    nc: NATS
    client: Client

    @property
    def store(self) -> Store:
        """Direct store access, for watches (JetStream read permission needed). A value it cannot
        read is a warning on stderr."""
        store = Store(self.nc.jetstream(timeout=settings.timeout))
        store.on_unreadable(lambda entry: warn(entry.message()))
        return store


@contextlib.asynccontextmanager
async def session() -> AsyncIterator[Session]:
    nc = await connect(settings.servers, name="steer-cli", credentials=settings.credentials)
    client = Client(nc, timeout=settings.timeout)
    client.on_warning = warn
    try:
        yield Session(nc, client)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


# The CLI says what matters itself (errors, warnings); the bus's logs are for services, and
# without a handler of their own Python would print their warnings bare on stderr.
logging.getLogger("bus").addHandler(logging.NullHandler())
