"""`steer` end to end: a real nats-server, two API replicas, and the CLI as a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import Steer, steer_command

DEPLOYMENT = textwrap.dedent(
    """\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: web
      labels: {app: web}
    spec:
      replicas: 2
      selector:
        matchLabels: {app: web}
      template:
        metadata:
          labels: {app: web}
        spec:
          containers:
          - name: httpd
            image: busybox:local
            ports: [{containerPort: 8080, name: http}]
    """
)
SERVICE = textwrap.dedent(
    """\
    apiVersion: v1
    kind: Service
    metadata: {name: web, labels: {app: web}}
    spec:
      selector: {app: web}
      ports: [{port: 80, targetPort: http}]
    """
)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_apply_reports_created_unchanged_configured(steer: Steer, namespace: str, tmp_path: Path) -> None:
    path = write(tmp_path, "app.yaml", DEPLOYMENT + "---\n" + SERVICE)
    first = steer("apply", "-f", path, "-n", namespace)
    assert first.code == 0, first.err
    assert first.out.splitlines() == ["deployment.apps/web created", "service/web created"]
    again = steer("apply", "-f", path, "-n", namespace)
    assert again.out.splitlines() == ["deployment.apps/web unchanged", "service/web unchanged"]
    write(tmp_path, "app.yaml", DEPLOYMENT.replace("replicas: 2", "replicas: 5") + "---\n" + SERVICE)
    changed = steer("apply", "-f", path, "-n", namespace)
    assert changed.out.splitlines() == ["deployment.apps/web configured", "service/web unchanged"]
    body = json.loads(steer("get", "deploy", "web", "-n", namespace, "-o", "json").out)
    assert body["spec"]["replicas"] == 5 and body["metadata"]["generation"] == 2


def test_apply_removes_fields_dropped_from_the_manifest(steer: Steer, namespace: str, tmp_path: Path) -> None:
    path = write(
        tmp_path, "d.yaml", DEPLOYMENT.replace("labels: {app: web}\nspec", "labels: {app: web, x: y}\nspec")
    )
    assert steer("apply", "-f", path, "-n", namespace).code == 0
    write(tmp_path, "d.yaml", DEPLOYMENT)
    assert steer("apply", "-f", path, "-n", namespace).out.strip() == "deployment.apps/web configured"
    body = json.loads(steer("get", "deploy", "web", "-n", namespace, "-o", "json").out)
    assert body["metadata"]["labels"] == {"app": "web"}


def test_apply_from_stdin_json_and_directory(steer: Steer, namespace: str, tmp_path: Path) -> None:
    assert steer("apply", "-f", "-", "-n", namespace, stdin=SERVICE).out.strip() == "service/web created"
    as_json = json.dumps(yaml.safe_load(DEPLOYMENT))
    folder = tmp_path / "manifests"
    folder.mkdir()
    write(folder, "deploy.json", as_json)
    write(folder, "notes.txt", "not a manifest")
    result = steer("apply", "-f", str(folder), "-n", namespace)
    assert result.out.strip() == "deployment.apps/web created", result.err


def test_get_formats(steer: Steer, namespace: str, tmp_path: Path) -> None:
    steer("apply", "-f", write(tmp_path, "a.yaml", DEPLOYMENT + "---\n" + SERVICE), "-n", namespace)
    one = json.loads(steer("get", "deployment", "web", "-n", namespace, "-o", "json").out)
    assert one["kind"] == "Deployment" and one["apiVersion"] == "apps/v1"
    assert one["metadata"]["namespace"] == namespace and one["metadata"]["uid"]
    many = json.loads(steer("get", "svc", "-n", namespace, "-o", "json").out)
    assert many["kind"] == "List" and [i["metadata"]["name"] for i in many["items"]] == ["web"]
    as_yaml = yaml.safe_load(steer("get", "deploy/web", "-n", namespace, "-o", "yaml").out)
    assert as_yaml["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:local"
    assert steer("get", "deploy", "-n", namespace, "-o", "name").out.split() == ["deployment.apps/web"]
    table = steer("get", "deploy", "-n", namespace).out.splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[-1].split()[:2] == ["web", "0/2"]
    wide = steer("get", "deploy", "-n", namespace, "-o", "wide").out.splitlines()
    assert "IMAGES" in wide[0] and "busybox:local" in wide[-1]


def test_get_several_kinds_at_once(steer: Steer, namespace: str, tmp_path: Path) -> None:
    steer("apply", "-f", write(tmp_path, "a.yaml", DEPLOYMENT + "---\n" + SERVICE), "-n", namespace)
    names = steer("get", "deploy,svc", "-n", namespace, "-o", "name").out.split()
    assert names == ["deployment.apps/web", "service/web"]


def test_get_with_selector_and_all_namespaces(steer: Steer, namespace: str, tmp_path: Path) -> None:
    steer("apply", "-f", write(tmp_path, "a.yaml", DEPLOYMENT + "---\n" + SERVICE), "-n", namespace)
    assert steer("get", "svc", "-n", namespace, "-l", "app=web", "-o", "name").out.split() == ["service/web"]
    assert steer("get", "svc", "-n", namespace, "-l", "app!=web", "-o", "name").out.split() == []
    everywhere = steer("get", "services", "-A").out.splitlines()
    assert everywhere[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert any(line.split()[:2] == [namespace, "web"] for line in everywhere[1:])


@pytest.mark.parametrize("short", ["po", "deploy", "rs", "svc", "ep", "no", "ns", "hpa", "ev", "leases"])
def test_short_names(steer: Steer, namespace: str, short: str) -> None:
    result = steer("get", short, "-n", namespace)
    assert result.code == 0, result.err


def test_get_missing_object_is_one_clear_line(steer: Steer, namespace: str) -> None:
    result = steer("get", "pod", "nope", "-n", namespace)
    assert result.code == 1
    assert result.err_lines == ['Error from server (NotFound): pods "nope" not found']


def test_empty_listing(steer: Steer, namespace: str) -> None:
    result = steer("get", "pods", "-n", namespace)
    assert result.code == 0 and f"No resources found in {namespace} namespace." in result.err


def test_unknown_kind_and_bad_output(steer: Steer) -> None:
    unknown = steer("get", "widgets")
    assert unknown.code == 1 and unknown.err_lines == [
        'error: the server doesn\'t have a resource type "widgets"'
    ]
    bad = steer("get", "pods", "-o", "xml")
    assert bad.code == 1 and "unknown output format" in bad.err


BAD_MANIFESTS = {
    "malformed YAML": ("kind: Pod\nmetadata: {name: [unclosed\n", ["malformed YAML (line"]),
    "unknown kind": (
        "apiVersion: v1\nkind: Widget\nmetadata: {name: w}\n",
        ['no kind "Widget" is registered'],
    ),
    "wrong apiVersion": (
        DEPLOYMENT.replace("apps/v1", "apps/v1beta1"),
        ['no matches for kind "Deployment" in version "apps/v1beta1"'],
    ),
    "invalid name and label": (
        DEPLOYMENT.replace("name: web\n", "name: Web_1\n", 1).replace(
            "labels: {app: web}\nspec", "labels: {app: -x}\nspec"
        ),
        ["metadata.name: Invalid value", "metadata.labels"],
    ),
    "missing required": (
        DEPLOYMENT.replace("        image: busybox:local\n", ""),
        ["spec.template.spec.containers[0].image: Required value"],
    ),
    "wrong type": (
        DEPLOYMENT.replace("replicas: 2", "replicas: two"),
        ["spec.replicas: Invalid value: string"],
    ),
    "unsupported field": (
        DEPLOYMENT.replace("      containers:", "      volumes: []\n      containers:"),
        ["spec.template.spec.volumes: field not supported"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_bad_manifests_get_clear_errors_and_change_nothing(
    steer: Steer, namespace: str, tmp_path: Path, case: str
) -> None:
    assert steer("apply", "-f", write(tmp_path, "good.yaml", DEPLOYMENT), "-n", namespace).code == 0
    before = json.loads(steer("get", "deploy", "web", "-n", namespace, "-o", "json").out)
    text, expected = BAD_MANIFESTS[case]
    result = steer("apply", "-f", write(tmp_path, "bad.yaml", text), "-n", namespace)
    assert result.code == 1
    assert result.out == ""
    for fragment in expected:
        assert any(fragment in line for line in result.err_lines), result.err
    after = json.loads(steer("get", "deploy", "web", "-n", namespace, "-o", "json").out)
    assert after == before


def test_every_cause_on_its_own_line(steer: Steer, namespace: str, tmp_path: Path) -> None:
    bad = DEPLOYMENT.replace("replicas: 2", "replicas: -1").replace("containerPort: 8080", "containerPort: 0")
    result = steer("apply", "-f", write(tmp_path, "bad.yaml", bad), "-n", namespace)
    assert result.code == 1
    assert len(result.err_lines) >= 2
    assert all(
        line.startswith('Error from server (Invalid): Deployment "web" is invalid: ')
        for line in result.err_lines
    )


def test_oversized_object(steer: Steer, namespace: str, tmp_path: Path) -> None:
    big = SERVICE.replace(
        "metadata: {name: web, labels: {app: web}}",
        f"metadata: {{name: big, annotations: {{a: {'x' * 1_100_000}}}}}",
    )
    result = steer("apply", "-f", write(tmp_path, "big.yaml", big), "-n", namespace)
    assert result.code == 1 and "too large" in result.err
    assert steer("get", "svc", "big", "-n", namespace).code == 1


def test_a_bad_document_does_not_stop_the_others(steer: Steer, namespace: str, tmp_path: Path) -> None:
    text = DEPLOYMENT.replace("replicas: 2", "replicas: x") + "---\n" + SERVICE
    result = steer("apply", "-f", write(tmp_path, "mixed.yaml", text), "-n", namespace)
    assert result.code == 1
    assert result.out.strip() == "service/web created"


def test_create_and_delete(steer: Steer, namespace: str, tmp_path: Path) -> None:
    path = write(tmp_path, "svc.yaml", SERVICE)
    assert steer("create", "-f", path, "-n", namespace).out.strip() == "service/web created"
    duplicate = steer("create", "-f", path, "-n", namespace)
    assert duplicate.code == 1 and "already exists" in duplicate.err
    assert steer("delete", "svc", "web", "-n", namespace).out.strip() == 'service "web" deleted'
    assert steer("get", "svc", "web", "-n", namespace).code == 1
    steer("create", "-f", path, "-n", namespace)
    assert steer("delete", "-f", path, "-n", namespace).out.strip() == 'service "web" deleted'
    missing = steer("delete", "svc", "web", "-n", namespace)
    assert missing.code == 1 and "not found" in missing.err
    assert steer("delete", "svc", "web", "-n", namespace, "--ignore-not-found").code == 0


def test_describe_shows_the_object_and_its_events(steer: Steer, namespace: str, tmp_path: Path) -> None:
    steer("apply", "-f", write(tmp_path, "d.yaml", DEPLOYMENT), "-n", namespace)
    result = steer("describe", "deployment", "web", "-n", namespace)
    assert result.code == 0, result.err
    assert "Name:" in result.out and "web" in result.out
    assert "Spec:" in result.out and "busybox:local" in result.out
    assert "Created deployment web" in result.out


def test_events_replay_filters_and_since(steer: Steer, namespace: str, tmp_path: Path) -> None:
    steer("apply", "-f", write(tmp_path, "a.yaml", DEPLOYMENT + "---\n" + SERVICE), "-n", namespace)
    listing = steer("events", "-n", namespace).out.splitlines()
    assert listing[0].split()[:3] == ["LAST", "SEEN", "TYPE"]
    assert any("deployment/web" in line for line in listing) and any(
        "service/web" in line for line in listing
    )
    only = steer("events", "-n", namespace, "--for", "svc/web").out
    assert "service/web" in only and "deployment/web" not in only
    assert "service/web" in steer("events", "-A", "--since", "10m").out
    bad = steer("events", "--since", "ten minutes")
    assert bad.code == 1 and "invalid duration" in bad.err


def read_until(proc: subprocess.Popen[str], fragment: str) -> list[str]:
    """Lines from a running `steer ... -w` until one contains `fragment` (bounded by the test timeout)."""
    seen: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if fragment in line:
            return seen
    raise AssertionError(f"stream ended before {fragment!r}: {seen}")


@contextlib.contextmanager
def watch(nats_url: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """A running `steer ... -w`, stopped (and its pipe closed) on exit."""
    env = {**os.environ, "STEER_NATS": nats_url, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen([*steer_command(), *args], stdout=subprocess.PIPE, text=True, env=env) as proc:
        try:
            yield proc
        finally:
            proc.terminate()


def test_get_watch_streams_changes(steer: Steer, namespace: str, nats_url: str, tmp_path: Path) -> None:
    steer("apply", "-f", write(tmp_path, "s.yaml", SERVICE), "-n", namespace)
    with watch(nats_url, "get", "svc", "-n", namespace, "-w") as proc:
        assert read_until(proc, "web")[0].split()[0] == "NAME"
        steer(
            "apply",
            "-f",
            write(tmp_path, "t.yaml", SERVICE.replace("name: web,", "name: other,")),
            "-n",
            namespace,
        )
        read_until(proc, "other")


def test_events_watch_follows_live(steer: Steer, namespace: str, nats_url: str, tmp_path: Path) -> None:
    steer("apply", "-f", write(tmp_path, "s.yaml", SERVICE), "-n", namespace)
    with watch(nats_url, "events", "-n", namespace, "-w") as proc:
        read_until(proc, "Created service web")
        steer("delete", "svc", "web", "-n", namespace)
        read_until(proc, "Deleted service web")


def test_status_lists_both_api_replicas(steer: Steer) -> None:
    result = steer("status")
    assert result.code == 0
    rows = [line.split() for line in result.out.splitlines() if line.startswith("steer-api")]
    assert len(rows) == 2


def test_usage_errors_do_not_trace(steer: Steer) -> None:
    assert steer("delete").code == 1
    assert steer("apply").code == 1
    assert steer("get").code == 2
    assert steer("nonsense").code == 2


def test_cordon_and_uncordon(steer: Steer) -> None:
    name = f"cordon-{os.getpid()}"
    node = f"apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n"
    assert steer("apply", "-f", "-", stdin=node).code == 0
    assert steer("cordon", name).out.strip() == f"node/{name} cordoned"
    assert "SchedulingDisabled" in steer("get", "node", name).out
    assert steer("cordon", name).out.strip() == f"node/{name} already cordoned"
    assert steer("uncordon", name).out.strip() == f"node/{name} uncordoned"
    assert "SchedulingDisabled" not in steer("get", "node", name).out
    missing = steer("cordon", "no-such-node")
    assert missing.code == 1 and 'nodes "no-such-node" not found' in missing.err
    steer("delete", "node", name)


def test_a_toleration_with_a_bad_operator_is_invalid(steer: Steer, namespace: str) -> None:
    bad = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: tol}\nspec:\n"
        "  tolerations: [{key: k, operator: Sometimes}]\n  containers: [{name: c, image: i}]\n"
    )
    result = steer("apply", "-f", "-", "-n", namespace, stdin=bad)
    assert result.code == 1
    assert 'spec.tolerations[0].operator: Unsupported value: "Sometimes"' in result.err
