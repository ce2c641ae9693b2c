"""`steer credentials`, and the CLI under credentials: found on its own, refused in one line."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

from bus import natsserver
from cli import registry
from tests.cli.conftest import steer_command
from tests.securecluster import SecureCluster

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: prod}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: busybox:local}]}
"""


def steer(
    *args: str, cwd: Path | None = None, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("STEER_CREDS", "STEER_NATS")}
    environment.update({"COLUMNS": "200", "XDG_CONFIG_HOME": str(cwd or Path.cwd()), **env})
    done = subprocess.run(
        [*steer_command(), *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_init_add_and_revoke(tmp_path: Path) -> None:
    directory = tmp_path / "creds"
    done = steer("credentials", "init", "--dir", str(directory), "--nodes", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    names = {p.stem for p in directory.glob("*.nk")}
    assert names == {"api", "scheduler", "controllers", "admin", "node-1", "node-2"}
    for path in directory.glob("*.nk"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (
        steer(
            "credentials", "add-user", "alice", "--role", "edit", "-n", "mine", "--dir", str(directory)
        ).returncode
        == 0
    )
    assert steer("credentials", "add-node", "node-3", "--dir", str(directory)).returncode == 0
    alice = registry.load(directory).identities["alice"]
    assert (alice.role, alice.namespaces) == ("edit", ("mine",))
    authorization = (directory / "authorization.conf").read_text()
    assert alice.public_key in authorization and "steer.node.node-3.*.*.*" in authorization
    # The file is a valid server configuration once included.
    config = natsserver.config_with(tmp_path / "nats" / "server.conf", [directory / "authorization.conf"])
    checked = subprocess.run([natsserver.binary(), "-c", str(config), "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr

    assert steer("credentials", "revoke", "alice", "--dir", str(directory)).returncode == 0
    assert not (directory / "alice.nk").exists()
    assert alice.public_key not in (directory / "authorization.conf").read_text()


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    directory = tmp_path / "creds"
    steer("credentials", "init", "--dir", str(directory))
    for args, message in (
        (("add-user", "bob", "--role", "root"), 'unknown role "root"'),
        (("add-user", "Bob_1"), 'identity name "Bob_1" is not valid'),
        (("revoke", "nobody"), 'no identity "nobody"'),
        (("add-user", "admin", "--role", "view"), 'identity "admin" exists with role admin'),
    ):
        done = steer("credentials", *args, "--dir", str(directory))
        assert done.returncode == 1 and message in done.stderr and len(done.stderr.splitlines()) == 1, (
            done.stderr
        )


def test_a_refused_request_is_one_clear_line(secure: SecureCluster) -> None:
    creds = str(secure.credentials / "alice.nk")
    started = time.monotonic()
    done = steer("--nats", secure.url, "--creds", creds, "create", "-f", "-", stdin=DEPLOYMENT)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        'Error from server (Forbidden): user "alice" cannot create deployments.apps in the namespace "prod"'
    )
    assert time.monotonic() - started < 10  # not a request timeout


def test_a_wrong_credential_is_one_line_naming_the_file(secure: SecureCluster, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.nk"
    steer("credentials", "init", "--dir", str(tmp_path / "other"))
    shutil.copy(tmp_path / "other" / "admin.nk", stranger)
    done = steer("--nats", secure.url, "--creds", str(stranger), "get", "namespaces")
    assert done.returncode == 1
    refused = f'refused the credentials in {stranger} (identity "admin"): wrong, or revoked'
    assert done.stderr.strip().splitlines() == [f"error: NATS at {secure.url} {refused}"]
    anonymous = steer("--nats", secure.url, "get", "namespaces", cwd=tmp_path)
    assert anonymous.returncode == 1 and "requires credentials" in anonymous.stderr


def test_the_cli_finds_the_admin_credential_as_kubectl_finds_its_config(
    secure: SecureCluster, tmp_path: Path
) -> None:
    local = tmp_path / ".steer" / "credentials"
    local.mkdir(parents=True)
    shutil.copy(secure.credentials / "admin.nk", local / "admin.nk")
    done = steer("--nats", secure.url, "get", "namespaces", cwd=tmp_path)
    assert done.returncode == 0 and "victim" in done.stdout, done.stderr
    # STEER_CREDS before the local one: vera may not list namespaces.
    done = steer(
        "--nats",
        secure.url,
        "get",
        "namespaces",
        cwd=tmp_path,
        STEER_CREDS=str(secure.credentials / "vera.nk"),
    )
    assert done.returncode == 1 and 'user "vera" cannot list namespaces at the cluster scope' in done.stderr
    # The user's config dir, when the current directory has none.
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "steer").mkdir(parents=True)
    shutil.copy(secure.credentials / "otto.nk", elsewhere / "steer" / "creds")
    done = steer("--nats", secure.url, "get", "pods", "-n", "mine", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    # A credential others may read works, with a warning.
    loose = tmp_path / "loose.nk"
    shutil.copy(secure.credentials / "otto.nk", loose)
    loose.chmod(0o644)
    done = steer("--nats", secure.url, "--creds", str(loose), "get", "pods", "-n", "mine")
    assert done.returncode == 0 and "chmod 600" in done.stderr


def test_init_with_tls_keeps_a_certificate_per_identity(tmp_path: Path) -> None:
    directory = tmp_path / "creds"
    done = steer("credentials", "init", "--dir", str(directory), "--nodes", "1", "--tls", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    tls = directory / "tls"
    identities = {"api", "scheduler", "controllers", "admin", "node-1"}
    assert {p.stem for p in tls.glob("*.pem") if not p.stem.endswith("-key")} == identities | {"ca", "server"}
    assert (tls / "tls.conf").exists() and (tls / "routes-tls.conf").exists()
    server_before = (tls / "server.pem").read_bytes()

    done = steer("credentials", "add-user", "alice", "--role", "view", "--dir", str(directory))
    assert done.returncode == 0, done.stderr
    assert (tls / "alice.pem").exists() and stat.S_IMODE((tls / "alice-key.pem").stat().st_mode) == 0o600
    assert (tls / "server.pem").read_bytes() == server_before  # the servers' certificate stays

    done = steer("credentials", "revoke", "alice", "--dir", str(directory))
    assert done.returncode == 0, done.stderr
    assert not (tls / "alice.pem").exists() and not (tls / "alice-key.pem").exists()
