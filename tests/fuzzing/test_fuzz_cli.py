"""`steer apply -f` as a subprocess with fuzzed manifest files: never a traceback, never an
internal error, exit code 0 or 1 (the in-process apply path in test_fuzz_api sees many more)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hypothesis import example, given, settings

from tests.cli.conftest import steer_command
from tests.fuzzing import manifests
from tests.fuzzing.conftest import SUITE, Fuzz


def test_steer_apply_never_prints_a_traceback(fuzz: Fuzz, tmp_path: Path) -> None:
    env = {**os.environ, "STEER_NATS": fuzz.harness.plane.url}
    manifest = tmp_path / "fuzz.yaml"

    @settings(SUITE, max_examples=8)
    @given(manifests.manifest().flatmap(manifests.mutated).flatmap(lambda pair: manifests.text([pair[1]])))
    @example("replicas: 1" + "0" * 5000 + "\n")
    def check(text: str) -> None:
        manifest.write_text(text, encoding="utf-8", errors="surrogateescape")
        done = subprocess.run(
            [*steer_command(), "apply", "-f", str(manifest), "-n", fuzz.harness.namespace],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert "Traceback" not in done.stderr, done.stderr
        assert "internal error" not in done.stderr, done.stderr
        assert done.returncode in (0, 1), done.stderr

    check()
