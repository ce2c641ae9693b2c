"""`steer get` with more objects than one reply can carry: the client pages through them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Steer


def test_get_lists_more_than_one_reply_can_carry(steer: Steer, namespace: str, tmp_path: Path) -> None:
    container = {"name": "c", "image": "busybox:local", "command": ["x" * (700 * 1024)]}
    pods = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"big-{i}"},
            "spec": {"containers": [container]},
        }
        for i in range(7)
    ]
    manifest = tmp_path / "pods.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
    applied = steer("create", "-f", str(manifest), "-n", namespace)
    assert applied.code == 0, applied.err
    names = steer("get", "pods", "-n", namespace, "-o", "name")
    assert names.code == 0, names.err
    assert names.out.split() == [f"pod/big-{i}" for i in range(7)]
    table = steer("get", "pods", "-n", namespace)
    assert table.code == 0 and len(table.out.splitlines()) == 8, table.err
