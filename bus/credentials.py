"""Credential files: who a process is on the bus, and how it proves it.

`steer credentials` writes one file per identity: an nkey seed (nats-server's public-key
authentication, no passwords stored anywhere), with comment lines saying whose it is:

    # steersman credential of "alice" (role edit, namespaces: mine). Whoever reads this file is alice.
    # steer-identity: alice
    # steer-role: edit
    SUA...

A standard NATS `.creds` file (a user JWT and its seed, from `nsc`) is accepted as well: it is
recognised by its `BEGIN NATS USER JWT` line and handed to nats-py as it is.

Every identity with one of our files gets its own inbox prefix (`_INBOX_<identity>`), so its
permissions can let it, and nobody else, read its replies. A file that group or others may
read is a secret in the open: loading one warns.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys

from bus import subjects
from bus.errors import SteerError

log = logging.getLogger(__name__)

IDENTITY_TAG = "# steer-identity:"
ROLE_TAG = "# steer-role:"
_JWT_MARK = "BEGIN NATS USER JWT"
_SEED_PREFIX = "SU"  # a user's nkey seed


class CredentialsError(SteerError):
    """A credential file that cannot be used; the message names the file."""

    reason = "Unauthorized"
    code = 401


@dataclass(frozen=True)
class Credential:
    """A loaded credential file: whose it is, and what nats-py needs to connect with it."""

    path: Path
    identity: str
    role: str = ""
    seed: str = ""  # our nkey files
    jwt: bool = False  # a standard .creds file

    def connect_options(self) -> dict[str, Any]:
        if self.jwt:
            return {"user_credentials": str(self.path)}
        return {"nkeys_seed_str": self.seed, "inbox_prefix": subjects.inbox_prefix(self.identity)}


def load(path: str | Path, *, warn: bool = True) -> Credential:
    """The credential in `path`; CredentialsError naming the file if it is not one. Warns (in
    the log) when group or others may read it."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise CredentialsError(f"cannot read credentials file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"credentials file {path} is not a text file") from None
    if warn and (problem := exposure(path)):
        log.warning("%s", problem)
    if _JWT_MARK in text:
        return Credential(path, _jwt_name(text) or path.stem, jwt=True)
    identity = role = seed = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(IDENTITY_TAG):
            identity = line[len(IDENTITY_TAG) :].strip()
        elif line.startswith(ROLE_TAG):
            role = line[len(ROLE_TAG) :].strip()
        elif line and not line.startswith("#"):
            seed = line
    if not seed.startswith(_SEED_PREFIX):
        raise CredentialsError(
            f"credentials file {path} holds neither a user nkey seed (a line starting with "
            f'"{_SEED_PREFIX}") nor a NATS user JWT'
        )
    try:
        public_key(seed)
    except (nkeys.NkeysError, ValueError, TypeError):
        raise CredentialsError(f"credentials file {path} holds a malformed nkey seed") from None
    identity = identity or path.stem
    try:
        subjects.token(identity, "identity")
    except SteerError as err:
        raise CredentialsError(f"credentials file {path}: {err.message}") from None
    return Credential(path, identity, role, seed)


def exposure(path: Path) -> str:
    """A warning if group or others may read the file at `path`; "" if only its owner may."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return ""
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (
            f"credentials file {path} is accessible by group or others (mode {stat.S_IMODE(mode):o}); "
            f"anyone who reads it can act as its identity: chmod 600 {path}"
        )
    return ""


def new_key() -> tuple[str, str]:
    """A fresh user nkey: (seed, public key). The seed is 32 random bytes, as nkeys' own
    CreateUser makes it; nkeys derives the ed25519 key and encodes both."""
    seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key
    return seed.decode(), public.decode()


def public_key(seed: str) -> str:
    return str(nkeys.from_seed(bytearray(seed.encode())).public_key.decode())


def write(path: Path, *, identity: str, role: str, seed: str, about: str = "") -> None:
    """Write a credential file readable by its owner only (created 0600, never world-readable
    for an instant)."""
    lines = [
        f'# steersman credential of "{identity}" ({about or role}). Whoever reads this file is {identity}.',
        f"{IDENTITY_TAG} {identity}",
        f"{ROLE_TAG} {role}",
        seed,
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines))
    os.chmod(temporary, 0o600)  # an older file of that name kept its mode
    temporary.replace(path)


def _jwt_name(text: str) -> str:
    """The `name` claim of the user JWT in a .creds file (read, not verified: the server does that)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if _JWT_MARK in line and i + 1 < len(lines):
            parts = lines[i + 1].strip().split(".")
            if len(parts) == 3:
                try:
                    claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
                except ValueError:
                    return ""
                return str(claims.get("name", "")) if isinstance(claims, dict) else ""
    return ""
