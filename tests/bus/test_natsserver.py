"""Starting nats-server: a server that cannot start says why, not only where its log is."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus import natsserver
from bus.errors import Unavailable


def test_a_server_that_cannot_listen_says_why(tmp_path: Path, nats_server: natsserver.NatsServer) -> None:
    log = tmp_path / "nats.log"
    with pytest.raises(Unavailable) as raised:
        natsserver.start(tmp_path / "second", port=nats_server.port, log_file=log)
    assert "address already in use" in raised.value.message
    assert str(log) in raised.value.message
