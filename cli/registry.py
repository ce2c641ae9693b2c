"""The credentials directory: a registry of identities, their credential files, and the
authorization file nats-server includes.

    <dir>/registry.json        identities: name, role, namespaces, public key (no secrets)
    <dir>/<name>.nk            one credential per identity (mode 0600: the nkey seed)
    <dir>/authorization.conf   generated from the registry (bus/permissions.py)

The registry is the source of truth: every change (`steer credentials add-user`, `add-node`,
`revoke`) rewrites the authorization file from it, and a running nats-server applies the new file
on reload (SIGHUP; `steer up` reloads its own server when the file changes).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from bus import credentials, permissions
from bus.errors import BadRequest, NotFound
from bus.permissions import Identity, Role
from bus.validation.rules import dns1123_label

REGISTRY = "registry.json"
AUTHORIZATION = "authorization.conf"
SUFFIX = ".nk"
COMPONENTS: tuple[Role, ...] = ("api", "scheduler", "controllers")
ADMIN = "admin"


@dataclass
class Registry:
    directory: Path
    identities: dict[str, Identity]

    @property
    def authorization_file(self) -> Path:
        return self.directory / AUTHORIZATION

    def credential_file(self, name: str) -> Path:
        return self.directory / f"{name}{SUFFIX}"

    def add(self, name: str, role: Role, namespaces: tuple[str, ...] = ()) -> tuple[Identity, bool]:
        """The identity `name`, created with a new key if it does not exist (and whether it was).
        An existing one must have the same role and namespaces: changing them is a revoke and
        an add, so that the old key stops working."""
        _check_name(name)
        for ns in namespaces:
            if problems := dns1123_label(ns):
                raise BadRequest(f'namespace "{ns}" is not valid: {"; ".join(problems)}')
        existing = self.identities.get(name)
        if existing is not None:
            if existing.role != role or existing.namespaces != namespaces:
                raise BadRequest(
                    f'identity "{name}" exists with role {existing.role}'
                    + (f" in {', '.join(existing.namespaces)}" if existing.namespaces else "")
                    + f"; revoke it first (steer credentials revoke {name})"
                )
            if self.credential_file(name).exists():
                return existing, False
        seed, public = credentials.new_key()
        identity = Identity(name, role, public, namespaces)
        about = f"role {role}" + (f", namespaces {', '.join(namespaces)}" if namespaces else "")
        credentials.write(self.credential_file(name), identity=name, role=role, seed=seed, about=about)
        self.identities[name] = identity
        return identity, True

    def revoke(self, name: str) -> None:
        if name not in self.identities:
            raise NotFound(f'no identity "{name}" in {self.directory / REGISTRY}')
        del self.identities[name]
        self.credential_file(name).unlink(missing_ok=True)

    def save(self) -> bool:
        """Write the registry and the authorization file; whether the latter changed."""
        entries = [
            {"name": i.name, "role": i.role, "publicKey": i.public_key, "namespaces": list(i.namespaces)}
            for i in self.identities.values()
        ]
        _write(self.directory / REGISTRY, json.dumps({"identities": entries}, indent=2) + "\n")
        config = permissions.authorization_config(self.identities.values())
        try:
            if self.authorization_file.read_text() == config:
                return False
        except OSError:
            pass
        _write(self.authorization_file, config)
        return True


def load(directory: Path) -> Registry:
    """The registry in `directory` (empty if there is none yet)."""
    path = directory / REGISTRY
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return Registry(directory, {})
    except (OSError, ValueError) as err:
        raise BadRequest(f"cannot read {path}: {err}") from None
    identities = {}
    try:
        for entry in raw["identities"]:
            role = entry["role"]
            if role not in permissions.ROLES:
                raise ValueError(f"unknown role {role!r}")
            identities[entry["name"]] = Identity(
                entry["name"], role, entry["publicKey"], tuple(entry.get("namespaces") or ())
            )
    except (KeyError, TypeError, ValueError) as err:
        raise BadRequest(f"{path} is not a steersman credentials registry: {err}") from None
    return Registry(directory, identities)


def ensure_cluster(directory: Path, node_names: list[str]) -> tuple[Registry, bool]:
    """The identities a cluster needs (api, scheduler, controllers, admin, one per node), made
    if missing; the registry, and whether the authorization file changed."""
    registry = load(directory)
    for role in COMPONENTS:
        registry.add(role, role)
    registry.add(ADMIN, "admin")
    for name in node_names:
        registry.add(name, "node")
    return registry, registry.save()


def _check_name(name: str) -> None:
    if problems := dns1123_label(name):
        raise BadRequest(f'identity name "{name}" is not valid: {"; ".join(problems)}')


def _write(path: Path, text: str) -> None:
    """Replace the file at once (a server reloading meanwhile reads the old or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)
