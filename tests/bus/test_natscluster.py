"""The configuration files of a NATS cluster, as bus/natscluster.py writes them: what each holds,
and that nats-server accepts them (`nats-server -t`), includes of credential and TLS files too."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bus import natscluster, natsserver


def specs() -> list[natscluster.ServerSpec]:
    return natscluster.loopback_specs(3, port=14222, cluster_port=16222, monitor_port=18222)


def test_each_server_routes_to_the_others_and_syncs_every_write(tmp_path: Path) -> None:
    paths = natscluster.write_configs(tmp_path, specs())
    assert [p.parent.name for p in paths] == ["steer-1", "steer-2", "steer-3"]
    text = paths[1].read_text()
    assert "server_name: steer-2" in text
    assert 'listen: "127.0.0.1:14223"' in text and 'listen: "127.0.0.1:16223"' in text
    assert '"nats-route://127.0.0.1:16222"' in text and '"nats-route://127.0.0.1:16224"' in text
    assert '16223"\n  ]' not in text  # no route to itself
    assert "sync_interval: always" in text and "max_payload: 4MB" in text
    assert f'store_dir: "{(tmp_path / "steer-2" / "jetstream").resolve()}"' in text
    assert natscluster.urls(specs()) == "nats://127.0.0.1:14222,nats://127.0.0.1:14223,nats://127.0.0.1:14224"


def test_included_files_are_named_relative_to_the_including_file(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    auth = secrets / "authorization.conf"
    auth.write_text('authorization { token: "s3cret" }\n')
    tls = secrets / "limits.conf"
    tls.write_text("max_connections: 1000\n")  # a block of our own: the tests make no certificates
    routes = secrets / "routes.conf"
    routes.write_text("pool_size: 2\n")  # a cluster-block setting, where the routes' tls goes
    paths = natscluster.write_configs(
        tmp_path / "nats", specs(), includes=[auth, tls], route_includes=[routes], key_variable="TEST_JS_KEY"
    )
    text = paths[0].read_text()
    assert 'include "../../secrets/authorization.conf"' in text
    assert 'include "../../secrets/limits.conf"' in text
    assert '  include "../../secrets/routes.conf"\n}' in text
    assert "cipher: chachapoly" in text and "key: $TEST_JS_KEY" in text
    env = {**os.environ, "TEST_JS_KEY": "a-key-for-the-test-only"}
    for path in paths:
        checked = subprocess.run(
            [natsserver.binary(), "-t", "-c", str(path)], capture_output=True, text=True, timeout=30, env=env
        )
        assert checked.returncode == 0, checked.stderr
