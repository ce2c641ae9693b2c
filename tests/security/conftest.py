"""One secured control plane for the package (tests/securecluster.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.securecluster import SecureCluster


@pytest.fixture(scope="package")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    with SecureCluster.running(tmp_path_factory.mktemp("secure")) as cluster:
        yield cluster
