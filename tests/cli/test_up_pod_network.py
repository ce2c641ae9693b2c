"""`steer up --network pod`: Ctrl-C keeps the pods and their networks for the next `steer up` to
adopt (same addresses, nothing restarted), and `steer down` removes every namespace, link,
bridge and nftables table the nodes made."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import urllib.request
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from nodeagent.network import links, names
from nodeagent.network.nft import Nft, Table
from tests.cli.localup import LocalUp, local_up, node_prefix
from tests.cli.test_down import down

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

WEB = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: httpd
          image: busybox:local
          command:
            - busybox
            - sh
            - -c
            - mkdir -p www && busybox hostname > www/index.html && exec busybox httpd -f -p 80 -h www
          ports: [{name: http, containerPort: 80}]
          readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
"""


SERVICE = """apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
"""


def pods(up: LocalUp) -> dict[str, tuple[str, str, int]]:
    """name -> (uid, pod IP, restarts) of the running pods."""
    listed = up.steer("get", "pods", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    return {
        p["metadata"]["name"]: (
            p["metadata"]["uid"],
            p["status"]["podIP"],
            sum(c.get("restartCount", 0) for c in p["status"]["containerStatuses"]),
        )
        for p in json.loads(listed.stdout)["items"]
    }


def fetch(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/", timeout=5) as response:  # noqa: S310 (a pod address)
        return str(response.read().decode()).strip()


def test_ctrl_c_keeps_the_pod_networks_for_the_next_up_and_down_removes_them(tmp_path: Path) -> None:
    data_dir, prefix = tmp_path / "cluster", node_prefix()
    service_cidr = f"10.{140 + os.getpid() % 10}.0.0/16"
    cidr = (
        "--network",
        "pod",
        "--cluster-cidr",
        f"10.{150 + os.getpid() % 10}.0.0/16",
        "--service-cidr",
        service_cidr,
    )
    with local_up(data_dir, *cidr, nodes=2, prefix=prefix) as up:
        assert up.steer("apply", "-f", "-", stdin=WEB).returncode == 0
        available = up.steer("wait", "--for=condition=Available", "deploy/web", "--timeout", "90s")
        assert available.returncode == 0, available.stdout + available.stderr
        before = pods(up)
        for name, (_, address, _) in before.items():
            assert fetch(address) == name
        assert up.steer("apply", "-f", "-", stdin=SERVICE).returncode == 0
        listed = json.loads(up.steer("get", "svc", "web", "-o", "json").stdout)
        assert ipaddress.IPv4Address(listed["spec"]["clusterIP"]) in ipaddress.IPv4Network(service_cidr)
        up.proc.send_signal(signal.SIGINT)
        assert up.proc.wait(60) == 0
    uids = {uid for uid, _, _ in before.values()}
    assert {names.netns(uid) for uid in uids} <= set(links.netns_names())  # kept for adoption
    for name, (_, address, _) in before.items():
        assert fetch(address) == name  # still serving, with no agent running
    with local_up(data_dir, *cidr, nodes=2, prefix=prefix) as up:
        available = up.steer("wait", "--for=condition=Available", "deploy/web", "--timeout", "90s")
        assert available.returncode == 0, available.stdout + available.stderr
        assert pods(up) == before  # the same pods, addresses and restart counts
    result = down(data_dir, "--purge")
    assert result.returncode == 0, result.stdout + result.stderr
    nodes = [f"{prefix}-{i}" for i in (1, 2)]
    made = {names.bridge(n) for n in nodes} | {names.veth(uid) for uid in uids}
    with IPRoute() as ipr:
        left = {str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()} & made
    assert not left
    assert not {names.netns(uid) for uid in uids} & set(links.netns_names())
    assert not [n for n in nodes if asyncio.run(Nft().listing(Table.for_node(n).name))]
