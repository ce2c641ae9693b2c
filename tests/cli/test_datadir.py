"""One `steer up` per data dir, and what it tells others of itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bus.errors import SteerError
from cli import datadir
from cli.datadir import UpRecord


def test_a_claimed_data_dir_is_refused_to_another_naming_the_holder(tmp_path: Path) -> None:
    record = UpRecord(pid=os.getpid(), url="nats://127.0.0.1:4222", node_prefix="n", runtime="process")
    assert not datadir.is_claimed(tmp_path)
    with datadir.claim(tmp_path, record):
        assert datadir.is_claimed(tmp_path)
        assert datadir.holder(tmp_path) == os.getpid()
        assert datadir.read(tmp_path) == record
        with pytest.raises(SteerError, match=rf"is in use by another steer up \(pid {os.getpid()}\)"):
            with datadir.claim(tmp_path, UpRecord(pid=1, url="nats://127.0.0.1:4223")):
                pass
    assert not datadir.is_claimed(tmp_path)
    assert datadir.holder(tmp_path) is None
    assert datadir.read(tmp_path) == record  # left for `steer down`: where the containers are


def test_no_record_reads_as_none(tmp_path: Path) -> None:
    assert datadir.read(tmp_path) is None
    (tmp_path / datadir.RECORD).write_text("")  # being written this instant
    assert datadir.read(tmp_path) is None
