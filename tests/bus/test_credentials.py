"""Credential files: ours (an nkey seed with comment lines) and standard NATS .creds (JWT)."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from bus import credentials, subjects


def test_a_written_credential_reads_back_private(tmp_path: Path) -> None:
    seed, public = credentials.new_key()
    path = tmp_path / "alice.nk"
    credentials.write(path, identity="alice", role="edit", seed=seed)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = credentials.load(path)
    assert (loaded.identity, loaded.role, loaded.seed, loaded.jwt) == ("alice", "edit", seed, False)
    assert credentials.public_key(seed) == public and public.startswith("U")
    assert loaded.connect_options() == {
        "nkeys_seed_str": seed,
        "inbox_prefix": subjects.inbox_prefix("alice"),
    }


def test_a_standard_creds_file_is_recognised(tmp_path: Path) -> None:
    seed, _ = credentials.new_key()
    claims = base64.urlsafe_b64encode(json.dumps({"name": "bob"}).encode()).decode().rstrip("=")
    path = tmp_path / "user.creds"
    path.write_text(
        "-----BEGIN NATS USER JWT-----\n"
        f"eyJhbGciOiJlZDI1NTE5In0.{claims}.c2ln\n"
        "------END NATS USER JWT------\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed}\n"
        "------END USER NKEY SEED------\n"
    )
    path.chmod(0o600)
    loaded = credentials.load(path)
    assert (loaded.identity, loaded.jwt) == ("bob", True)
    assert loaded.connect_options() == {"user_credentials": str(path)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds neither a user nkey seed"),
        ("# steer-identity: x\nSUnotaseed\n", "malformed nkey seed"),
        ("SAAGNJOZTRPYYXG2NJX3ZNGXYUSDYX2BWO447W3SHG6XQ7U66RWHQ3JUXM\n", "holds neither"),  # an account seed
    ],
)
def test_what_is_no_credential_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.nk"
    path.write_text(text)
    with pytest.raises(credentials.CredentialsError, match=f"{path}.*{message}|{message}"):
        credentials.load(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        credentials.CredentialsError, match=f"cannot read credentials file {tmp_path / 'none.nk'}"
    ):
        credentials.load(tmp_path / "none.nk")


def test_exposure(tmp_path: Path) -> None:
    seed, _ = credentials.new_key()
    path = tmp_path / "c.nk"
    credentials.write(path, identity="c", role="view", seed=seed)
    assert credentials.exposure(path) == ""
    path.chmod(0o640)
    assert "mode 640" in credentials.exposure(path)
