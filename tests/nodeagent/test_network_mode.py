"""Which network a node's pods get: `auto` is the pod network where the agent may make
namespaces, else the host's; `pod` where impossible is a clear error."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from nodeagent.network import mode
from nodeagent.network.mode import NetworkModeError, resolve_mode
from nodeagent.runtime import Runtime


@dataclass
class Engine:
    name: str
    local: bool = True


@pytest.mark.parametrize(
    ("requested", "runtime", "root", "expected"),
    [
        ("auto", Engine("docker"), True, "pod"),
        ("auto", Engine("process"), True, "pod"),
        ("auto", Engine("process"), False, "host"),  # not root: no namespaces
        ("auto", Engine("fake"), True, "host"),  # hollow containers have nothing to put in them
        ("auto", Engine("docker", local=False), True, "host"),  # a remote engine's containers
        ("host", Engine("docker"), True, "host"),
        ("pod", Engine("docker"), True, "pod"),
    ],
)
def test_the_mode_a_request_comes_to(
    monkeypatch: pytest.MonkeyPatch, requested: str, runtime: Engine, root: bool, expected: str
) -> None:
    monkeypatch.setattr(mode.os, "geteuid", lambda: 0 if root else 1000)
    assert resolve_mode(requested, runtime) == expected  # type: ignore[arg-type]


def test_the_pod_network_asked_for_where_impossible_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mode.os, "geteuid", lambda: 1000)
    runtime: Runtime = Engine("process")  # type: ignore[assignment]
    with pytest.raises(NetworkModeError, match="need root"):
        resolve_mode("pod", runtime)
