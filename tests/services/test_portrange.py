"""The nodePort range's arithmetic (pure), the flags that set it, and what an update keeps of the
nodePorts a Service has."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bus import natscluster
from bus.resources import Service
from cli.up import _buses, _cluster
from services.api.__main__ import parse_args
from services.api.admission import keep_node_ports
from services.api.portrange import NodePortRange


@pytest.mark.parametrize(
    ("text", "size", "band"),
    [
        ("30000-32767", 2768, 86),  # Kubernetes' default: min(max(16, 2768 // 32), 128)
        ("30100-30109", 10, 0),  # under 16 ports: no lower band
        ("20000-29999", 10000, 128),
        ("31000-31000", 1, 0),
    ],
)
def test_parse(text: str, size: int, band: int) -> None:
    parsed = NodePortRange.parse(text)
    assert (str(parsed), parsed.size, parsed.band) == (text, size, band)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("30000", "not a port range LOW-HIGH"),
        ("30000-", "not a port range LOW-HIGH"),
        ("a-b", "not a port range LOW-HIGH"),
        ("-1-5", "not a port range LOW-HIGH"),
        ("32767-30000", "the first not above the last"),
        ("0-100", "between 1 and 65535"),
        ("60000-70000", "between 1 and 65535"),
    ],
)
def test_parse_refuses(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        NodePortRange.parse(text)


def test_refusal_names_the_range() -> None:
    ports = NodePortRange.parse("31000-31009")
    assert ports.refusal(31000) == ports.refusal(31009) == ""
    assert ports.refusal(30999) == (
        "provided port is not in the valid range. The range of valid ports is 31000-31009"
    )


def test_candidates_cover_the_upper_band_before_the_lower() -> None:
    ports = NodePortRange.parse("30000-30099")  # a band of 16
    order = list(ports.candidates(random.Random(7)))
    assert sorted(order) == list(range(30000, 30100))
    assert set(order[:84]) == set(range(30016, 30100))
    starts = {next(ports.candidates(random.Random(seed))) for seed in range(20)}
    assert len(starts) > 5  # a random start: replicas seldom race for the same port


def test_the_api_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args([]).node_port_range == NodePortRange(30000, 32767)
    assert parse_args(["--service-node-port-range", "31000-31099"]).node_port_range == NodePortRange(
        31000, 31099
    )
    with pytest.raises(SystemExit):
        parse_args(["--service-node-port-range", "32767-30000"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.endswith(
        "error: --service-node-port-range: '32767-30000': the ports must be between "
        "1 and 65535, the first not above the last"
    )


def test_steer_up_passes_the_range_to_the_api(tmp_path: Path) -> None:
    specs = natscluster.loopback_specs(1, port=4222, cluster_port=6222)
    buses = _buses(tmp_path, specs, includes=[], credentials=None)
    cluster = _cluster(
        tmp_path,
        buses,
        url=natscluster.urls(specs),
        replicas={"api": 2, "scheduler": 1, "controllers": 1},
        node_names=[],
        runtime="process",
        node_port_range="31000-31099",
    )
    apis = [child for child in cluster.services if child.name.startswith("api-")]
    assert len(apis) == 2
    for api in apis:
        flag = api.argv.index("--service-node-port-range")
        assert api.argv[flag + 1] == "31000-31099"


def service(kind: str, *ports: dict[str, Any]) -> Service:
    raw = {"metadata": {"name": "web"}, "spec": {"type": kind, "ports": list(ports)}}
    return msgspec.convert(raw, Service)


@pytest.mark.parametrize(
    ("old", "new", "kept"),
    [
        # the same port left out: kept
        (
            service("NodePort", {"port": 80, "nodePort": 30080}),
            service("NodePort", {"port": 80}),
            [30080],
        ),
        # matched by name, though the port number changed
        (
            service(
                "NodePort",
                {"name": "a", "port": 80, "nodePort": 30080},
                {"name": "b", "port": 81, "nodePort": 30081},
            ),
            service("NodePort", {"name": "b", "port": 8081}, {"name": "a", "port": 8080}),
            [30081, 30080],
        ),
        # matched by number and protocol when the name is new
        (
            service(
                "LoadBalancer",
                {"name": "a", "port": 80, "nodePort": 30080},
                {"name": "b", "port": 81, "nodePort": 30081},
            ),
            service("LoadBalancer", {"name": "c", "port": 81}, {"name": "d", "port": 82}),
            [30081, None],
        ),
        # not when another port of the update took it
        (
            service(
                "NodePort",
                {"name": "a", "port": 80, "nodePort": 30080},
                {"name": "b", "port": 81, "nodePort": 30081},
            ),
            service("NodePort", {"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30080}),
            [None, 30080],
        ),
        # a new type that opens none: nothing kept
        (service("NodePort", {"port": 80, "nodePort": 30080}), service("ClusterIP", {"port": 80}), [None]),
        # an old type that opened none: nothing to keep
        (service("ClusterIP", {"port": 80}), service("NodePort", {"port": 80}), [None]),
    ],
    ids=["same", "by-name", "by-number", "used", "to-clusterip", "from-clusterip"],
)
def test_an_update_keeps_the_node_ports_it_leaves_out(
    old: Service, new: Service, kept: list[int | None]
) -> None:
    keep_node_ports(new, old)
    assert [port.node_port for port in new.spec.ports] == kept
