"""`steer apply` takes the NetworkPolicy manifests of the Kubernetes documentation unchanged."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Steer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "networkpolicy.yaml"
NAMES = [
    "test-network-policy",
    "default-deny-ingress",
    "allow-all-ingress",
    "default-deny-egress",
    "allow-all-egress",
    "default-deny-all",
    "multi-port-egress",
]


def test_the_documentation_examples_apply_unchanged(steer: Steer) -> None:
    made = steer("create", "namespace", "default")  # the examples name it, or fall into it
    assert made.code == 0 or "AlreadyExists" in made.err, made.err
    applied = steer("apply", "-f", str(EXAMPLES))
    try:
        assert applied.code == 0, applied.err
        assert applied.out.splitlines() == [f"networkpolicy.networking.k8s.io/{n} created" for n in NAMES]
        listed = steer("get", "netpol", "-n", "default").out.splitlines()
        assert listed[0].split() == ["NAME", "POD-SELECTOR", "AGE"]
        rows = {line.split()[0]: line.split()[1] for line in listed[1:]}
        assert rows["test-network-policy"] == "role=db"
        assert rows["default-deny-ingress"] == "<none>"
        again = steer("apply", "-f", str(EXAMPLES))
        assert again.out.splitlines() == [f"networkpolicy.networking.k8s.io/{n} unchanged" for n in NAMES]
        assert steer("get", "networkpolicies", "default-deny-egress", "-n", "default", "-o", "yaml").code == 0
    finally:
        steer("delete", "-f", str(EXAMPLES))
