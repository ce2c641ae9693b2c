"""`steer up` is secure by default: no anonymous connection, every process under its own
credential, and a user added while it runs is let in once the server has reloaded."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.cli.conftest import steer_command
from tests.cli.localup import eventually, local_up

POD = """apiVersion: v1
kind: Pod
metadata: {name: p, namespace: default}
spec: {containers: [{name: c, image: busybox:local}]}
"""


def bare_steer(url: str, *args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`steer` with no credential found on its own (another directory, another config dir)."""
    env = {k: v for k, v in os.environ.items() if k not in ("STEER_CREDS", "STEER_NATS")}
    env.update({"STEER_NATS": url, "XDG_CONFIG_HOME": str(cwd)})
    return subprocess.run(
        [*steer_command(), *args], cwd=cwd, input=stdin, capture_output=True, text=True, env=env, timeout=60
    )


def test_up_is_secure_by_default_and_reloads_new_credentials(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with local_up(data) as up:
        assert "STEER_CREDS=" in up.lines[-1]
        anonymous = bare_steer(up.url, "get", "namespaces", cwd=tmp_path)
        assert anonymous.returncode == 1 and "requires credentials" in anonymous.stderr
        assert up.steer("get", "namespaces").returncode == 0  # as admin
        processes = [cmdline for cmdline in up.children().values() if "services." in cmdline]
        assert processes and all("--creds" in cmdline for cmdline in processes)

        added = bare_steer(
            up.url,
            "credentials",
            "add-user",
            "bob",
            "--role",
            "view",
            "--dir",
            str(data / "credentials"),
            cwd=tmp_path,
        )
        assert added.returncode == 0, added.stderr
        up.read_until("reloaded")
        bob = ["--creds", str(data / "credentials" / "bob.nk")]
        assert eventually(lambda: bare_steer(up.url, *bob, "get", "pods", cwd=tmp_path).returncode == 0)
        refused = bare_steer(up.url, *bob, "create", "-f", "-", cwd=tmp_path, stdin=POD)
        assert refused.returncode == 1
        assert 'user "bob" cannot create pods in the namespace "default"' in refused.stderr


def test_up_insecure_needs_no_credential(tmp_path: Path) -> None:
    with local_up(tmp_path / "data", "--insecure") as up:
        assert not (tmp_path / "data" / "credentials").exists()
        done = bare_steer(up.url, "get", "namespaces", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
