"""Connection settings shared by every command, and the async session they open.

Settings come from the global options (`steer --nats URL get pods`) or the environment
(`STEER_NATS`, `STEER_CREDS`, `STEER_TLS_CA`, `STEER_TLS_CERT`, `STEER_TLS_KEY`), defaulting
to the embedded cluster of `steer up`.

The credential is found as kubectl finds its kubeconfig: `--creds FILE`, else `STEER_CREDS`,
else the admin credential of a `steer up` run from this directory (`.steer/credentials/admin.nk`),
else the user's own (`~/.config/steer/creds`, under `$XDG_CONFIG_HOME` if set); else none (a
cluster run with `steer up --insecure`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.client import Client as NATS

from bus import credentials as bus_credentials
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


LOCAL_CREDENTIALS = Path(".steer") / "credentials" / "admin.nk"


def user_credentials() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "steer" / "creds"


def credentials() -> Credentials:
    """The credential to connect with: the one given, or the first found (module docstring)."""
    if settings.credentials.creds_file:
        return settings.credentials
    for candidate in (LOCAL_CREDENTIALS, user_credentials()):
        if candidate.is_file():
            return dataclasses.replace(settings.credentials, creds_file=str(candidate))
    return settings.credentials


@contextlib.asynccontextmanager
async def session() -> AsyncIterator[Session]:
    creds = credentials()
    if creds.creds_file and (problem := bus_credentials.exposure(Path(creds.creds_file))):
        warn(problem)
    nc = await connect(settings.servers, name="steer-cli", credentials=creds)
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
