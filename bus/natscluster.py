"""The configuration of a NATS cluster with JetStream: one file per server, written from code.

Three servers (or five) on routes between them, file storage synced on every write
(`sync_interval: always`), and the store's buckets and the events stream at three replicas: a
server can die, even with the power, and no acknowledged write is lost. `steer up --servers 3`
runs such a cluster on loopback, the tests run one on random ports, and docs/operations.md shows
a generated file as the production configuration.

Credentials and TLS are not written here: they are files of their own (an `authorization {}`
block, a `tls {}` block) that each server's file `include`s, so that whoever manages them plugs
them in without touching this module. nats-server reads an include path relative to the file that
includes it (an absolute path is refused), so the paths are written relative to each server's file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CLUSTER_NAME = "steer"
# Objects are capped at 1 MiB by the API; requests up to 4 MiB reach it, so an oversized object
# gets a clear "too large" answer instead of a connection error (as in nats.conf).
MAX_PAYLOAD = "4MB"
REPLICAS = 3  # of every bucket and of the events stream, in a cluster of three or more


@dataclass(frozen=True)
class ServerSpec:
    """Where one server of the cluster listens: clients, routes, and (optionally) monitoring."""

    name: str
    host: str
    port: int
    cluster_port: int
    monitor_port: int | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def route(self) -> str:
        return f"nats-route://{self.host}:{self.cluster_port}"


def loopback_specs(
    count: int, *, port: int, cluster_port: int, monitor_port: int | None = None, host: str = "127.0.0.1"
) -> list[ServerSpec]:
    """`count` servers on consecutive ports from `port` (clients), `cluster_port` (routes) and
    `monitor_port` (if given): the layout `steer up --servers N` uses."""
    return [
        ServerSpec(
            name=f"{CLUSTER_NAME}-{i + 1}",
            host=host,
            port=port + i,
            cluster_port=cluster_port + i,
            monitor_port=None if monitor_port is None else monitor_port + i,
        )
        for i in range(count)
    ]


def urls(specs: Sequence[ServerSpec]) -> str:
    """Every client URL, comma-separated: the `--nats` value of every component."""
    return ",".join(spec.url for spec in specs)


def config_text(
    me: ServerSpec,
    peers: Sequence[ServerSpec],
    *,
    store_dir: Path,
    conf_dir: Path,
    includes: Sequence[Path] = (),
    route_includes: Sequence[Path] = (),
    key_variable: str = "",
    cluster_name: str = CLUSTER_NAME,
) -> str:
    """The configuration file of server `me`, to be written in `conf_dir`. `includes` are
    included at the top (an authorization block, the clients' tls block), `route_includes` in
    the cluster block (the routes' tls block); with `key_variable`, the store is encrypted at
    rest with the key in that environment variable (never in the file)."""
    routes = [peer.route for peer in peers if peer.name != me.name]
    lines = [
        f"# nats-server {me.name} of the {cluster_name} cluster (written by bus/natscluster.py).",
        f"server_name: {me.name}",
        f'listen: "{me.host}:{me.port}"',
        f"max_payload: {MAX_PAYLOAD}",
    ]
    if me.monitor_port is not None:
        lines.append(f'http: "{me.host}:{me.monitor_port}"')
    # Relative to this file, as nats-server wants it; each included file holds one block.
    lines += [f'include "{os.path.relpath(path, conf_dir)}"' for path in includes]
    lines += [
        "",
        "cluster {",
        f"  name: {cluster_name}",
        f'  listen: "{me.host}:{me.cluster_port}"',
        "  routes: [",
        *(f'    "{route}"' for route in routes),
        "  ]",
        *(f'  include "{os.path.relpath(path, conf_dir)}"' for path in route_includes),
        "}",
        "",
        "jetstream {",
        f'  store_dir: "{store_dir}"',
        "  # Every write reaches the disk before it is acknowledged: a power cut loses nothing.",
        "  sync_interval: always",
    ]
    if key_variable:
        lines += ["  cipher: chachapoly", f"  key: ${key_variable}"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_configs(
    root: Path,
    specs: Sequence[ServerSpec],
    *,
    includes: Sequence[Path] = (),
    route_includes: Sequence[Path] = (),
    key_variable: str = "",
    cluster_name: str = CLUSTER_NAME,
) -> list[Path]:
    """Write `root/<server>/nats.conf` for each server (its store in `root/<server>/jetstream`);
    the paths of the files, in the order of `specs`. See `config_text` for the rest."""
    paths = []
    for spec in specs:
        conf_dir = server_dir(root.resolve(), spec)
        conf_dir.mkdir(parents=True, exist_ok=True)
        text = config_text(
            spec,
            specs,
            store_dir=conf_dir / "jetstream",
            conf_dir=conf_dir,
            includes=[Path(p).resolve() for p in includes],
            route_includes=[Path(p).resolve() for p in route_includes],
            key_variable=key_variable,
            cluster_name=cluster_name,
        )
        path = conf_dir / "nats.conf"
        path.write_text(text)
        paths.append(path)
    return paths


def server_dir(root: Path, spec: ServerSpec) -> Path:
    """Where one server keeps its configuration, its store and its ports file."""
    return root / spec.name
