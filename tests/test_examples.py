"""Every manifest in examples/ is one the API accepts: known kinds and fields, valid values."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus import kinds
from bus.validation import decode_object
from bus.validation.semantic import validate
from cli.manifests import read

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path: Path) -> None:
    manifests = read([str(path)])
    assert manifests
    for manifest in manifests:
        info = kinds.by_kind(manifest.body["kind"])
        obj = decode_object(manifest.body, expected=info)
        assert validate(obj) == [], f"{path.name}: {manifest.body['kind']}"
