"""`steer get endpoints`: kubectl's ENDPOINTS column (ready address:port pairs, three, then a count)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus import kinds
from bus.meta import ObjectMeta
from bus.resources import Endpoints
from bus.resources.networking import EndpointAddress, EndpointPort, EndpointSubset
from cli.columns import header, row
from tests.cli.conftest import Steer


def subset(ips: list[str], ports: list[int], *, not_ready: tuple[str, ...] = ()) -> EndpointSubset:
    return EndpointSubset(
        addresses=[EndpointAddress(ip=ip) for ip in ips],
        not_ready_addresses=[EndpointAddress(ip=ip) for ip in not_ready],
        ports=[EndpointPort(port=p, name=f"p{p}") for p in ports],
    )


@pytest.mark.parametrize(
    ("subsets", "shown"),
    [
        ([], "<none>"),
        ([subset([], [80], not_ready=("127.0.0.11",))], "<none>"),  # not ready: not shown
        ([subset(["127.0.0.11"], [20000])], "127.0.0.11:20000"),
        (
            [subset(["127.0.0.11"], [20000]), subset(["127.0.0.12"], [20500])],
            "127.0.0.11:20000,127.0.0.12:20500",
        ),
        (
            [subset(["127.0.0.11"], [20000]), subset(["127.0.0.12", "127.0.0.13"], [20500, 20501])],
            "127.0.0.11:20000,127.0.0.12:20500,127.0.0.13:20500 + 2 more...",
        ),
        ([subset(["127.0.0.11", "127.0.0.12"], [])], "127.0.0.11,127.0.0.12"),  # no ports
        ([subset(["::1"], [8080])], "[::1]:8080"),
    ],
)
def test_endpoints_column(subsets: list[EndpointSubset], shown: str) -> None:
    ep = Endpoints(metadata=ObjectMeta(name="web", namespace="default"), subsets=subsets)
    assert header(kinds.BY_KIND["Endpoints"], wide=False, all_namespaces=False) == [
        "NAME",
        "ENDPOINTS",
        "AGE",
    ]
    assert row(ep, wide=False, all_namespaces=False)[:2] == ["web", shown]


def test_get_endpoints(steer: Steer, namespace: str, tmp_path: Path) -> None:
    manifest = tmp_path / "ep.yaml"
    manifest.write_text(
        """
apiVersion: v1
kind: Endpoints
metadata: {name: web}
subsets:
- addresses: [{ip: 127.0.0.11}, {ip: 127.0.0.12}]
  ports: [{name: http, port: 20000}]
- addresses: [{ip: 127.0.0.13}]
  notReadyAddresses: [{ip: 127.0.0.14}]
  ports: [{name: http, port: 20500}]
"""
    )
    assert steer("apply", "-n", namespace, "-f", str(manifest)).code == 0
    for kind in ("endpoints", "ep"):
        result = steer("get", kind, "-n", namespace)
        assert result.code == 0, result.err
        lines = result.out.splitlines()
        assert lines[0].split() == ["NAME", "ENDPOINTS", "AGE"]
        assert lines[1].split()[:2] == ["web", "127.0.0.11:20000,127.0.0.12:20000,127.0.0.13:20500"]
