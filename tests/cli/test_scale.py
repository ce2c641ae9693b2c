"""`steer scale` end to end: the CLI as a subprocess against the session's API."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.cli.conftest import Steer

WORKLOADS = textwrap.dedent(
    """\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 2
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec: {containers: [{name: c, image: busybox:local}]}
    ---
    apiVersion: apps/v1
    kind: ReplicaSet
    metadata: {name: batch}
    spec:
      replicas: 1
      selector: {matchLabels: {app: batch}}
      template:
        metadata: {labels: {app: batch}}
        spec: {containers: [{name: c, image: busybox:local}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec: {selector: {app: web}, ports: [{port: 80}]}
    """
)


@pytest.fixture
def workloads(steer: Steer, namespace: str) -> str:
    result = steer("apply", "-f", "-", "-n", namespace, stdin=WORKLOADS)
    assert result.code == 0, result.err
    return namespace


def replicas(steer: Steer, namespace: str, target: str) -> int:
    body = json.loads(steer("get", target, "-n", namespace, "-o", "json").out)
    return int(body["spec"].get("replicas", 1))


def test_scale_deployments_and_replicasets(steer: Steer, workloads: str) -> None:
    up = steer("scale", "deploy/web", "--replicas", "5", "-n", workloads)
    assert up.code == 0 and up.out == "deployment.apps/web scaled\n", up.err
    assert replicas(steer, workloads, "deployment/web") == 5
    down = steer("scale", "rs", "batch", "--replicas=0", "-n", workloads)
    assert down.code == 0 and down.out == "replicaset.apps/batch scaled\n", down.err
    assert replicas(steer, workloads, "rs/batch") == 0


def test_current_replicas_is_a_precondition(steer: Steer, workloads: str) -> None:
    wrong = steer("scale", "deployment/web", "--replicas", "3", "--current-replicas", "4", "-n", workloads)
    assert wrong.code == 1 and wrong.out == ""
    assert wrong.err_lines == ["error: Expected replicas to be 4, was 2"]
    assert replicas(steer, workloads, "deploy/web") == 2
    right = steer("scale", "deployment/web", "--replicas", "3", "--current-replicas", "2", "-n", workloads)
    assert right.code == 0 and right.out == "deployment.apps/web scaled\n", right.err
    assert replicas(steer, workloads, "deploy/web") == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deploy/web", "--replicas", "-1"], "error: --replicas must be 0 or more, not -1"),
        (["svc/web", "--replicas", "2"], "error: services cannot be scaled: only deployments and"),
        (["pods", "web", "--replicas", "2"], "error: pods cannot be scaled"),
        (["widgets/web", "--replicas", "2"], 'error: the server doesn\'t have a resource type "widgets"'),
        (["deploy", "--replicas", "2"], "error: specify the deployment to scale, e.g. deploy/NAME"),
        (["deploy/nope", "--replicas", "2"], 'Error from server (NotFound): deployments.apps "nope"'),
    ],
)
def test_bad_input_changes_nothing(steer: Steer, workloads: str, args: list[str], message: str) -> None:
    result = steer("scale", *args, "-n", workloads)
    assert result.code == 1 and result.out == ""
    assert len(result.err_lines) == 1 and result.err_lines[0].startswith(message), result.err
    assert replicas(steer, workloads, "deploy/web") == 2


def test_usage_errors(steer: Steer) -> None:
    missing = steer("scale", "deploy/web")
    assert missing.code == 2 and "Missing option '--replicas'" in missing.err
    not_a_number = steer("scale", "deploy/web", "--replicas", "many")
    assert not_a_number.code == 2 and "Invalid value for '--replicas'" in not_a_number.err
