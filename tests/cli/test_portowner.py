"""Naming who holds a port, from /proc, instead of "see nats.log"."""

from __future__ import annotations

import os
import socket

import pytest

from bus.errors import SteerError
from cli.portowner import ensure_free, listener, why_busy


def test_a_port_in_use_is_named_with_its_owner() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        owner = listener(port)
        assert owner is not None and owner.pid == os.getpid()
        assert (
            why_busy("127.0.0.1", port)
            == f"127.0.0.1:{port} is in use by pid {os.getpid()} ({owner.command})"
        )
        with pytest.raises(SteerError, match=f"is in use by pid {os.getpid()}"):
            ensure_free("127.0.0.1", port)


def test_a_listener_on_every_address_holds_the_loopback_port_too() -> None:
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        held.listen()
        port = held.getsockname()[1]
        assert f"is in use by pid {os.getpid()}" in why_busy("127.0.0.1", port)


def test_a_free_port_is_free() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert why_busy("127.0.0.1", port) == ""
    assert listener(port) is None
    ensure_free("127.0.0.1", port)
