"""Reading manifests from paths, and the three-way patch `steer apply` sends."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bus.errors import BadRequest
from cli.manifests import LAST_APPLIED, apply_patch, deep_merge, read, removals, with_last_applied


@pytest.mark.parametrize(
    ("last", "new", "expected"),
    [
        ({}, {"a": 1}, {}),
        ({"a": 1}, {"a": 2}, {}),
        ({"a": 1, "b": 2}, {"a": 1}, {"b": None}),
        ({"spec": {"replicas": 3, "paused": True}}, {"spec": {"replicas": 3}}, {"spec": {"paused": None}}),
        ({"spec": {"x": {"y": 1, "z": 2}}}, {"spec": {"x": {"y": 1}}}, {"spec": {"x": {"z": None}}}),
        ({"spec": {"x": 1}}, {}, {"spec": None}),
        ({"spec": {"x": 1}}, {"spec": {"x": 1}}, {}),
        # a map that became a scalar (or the reverse) is replaced, not nulled
        ({"a": {"b": 1}}, {"a": 5}, {}),
        ({"a": 5}, {"a": {"b": 1}}, {}),
        # lists are replaced whole
        ({"ports": [1, 2]}, {"ports": [1]}, {}),
        ({"a": 1}, None, {}),
        (None, {"a": 1}, {}),
        ([1], {"a": 1}, {}),
    ],
)
def test_removals(last: Any, new: Any, expected: dict[str, Any]) -> None:
    assert removals(last, new) == expected


@pytest.mark.parametrize(
    ("base", "top", "expected"),
    [
        ({}, {"a": 1}, {"a": 1}),
        ({"a": 1}, {}, {"a": 1}),
        ({"a": 1}, {"a": 2}, {"a": 2}),
        ({"a": {"b": 1}}, {"a": {"c": 2}}, {"a": {"b": 1, "c": 2}}),
        ({"a": {"b": {"c": None}}}, {"a": {"b": {"d": 1}}}, {"a": {"b": {"c": None, "d": 1}}}),
        ({"a": None}, {"a": {"b": 1}}, {"a": {"b": 1}}),
        ({"a": {"b": 1}}, {"a": None}, {"a": None}),
        ({"a": [1]}, {"a": [2]}, {"a": [2]}),
    ],
)
def test_deep_merge(base: dict[str, Any], top: dict[str, Any], expected: dict[str, Any]) -> None:
    before = json.dumps(base)
    assert deep_merge(base, top) == expected
    assert json.dumps(base) == before


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "Pod", "metadata": {"name": "p"}},
        {"kind": "Pod", "metadata": {"name": "p", "annotations": {"team": "x"}}},
        {"kind": "Pod", "metadata": None},
        {"kind": "Pod"},
    ],
)
def test_with_last_applied_records_the_body(body: dict[str, Any]) -> None:
    before = json.dumps(body)
    out = with_last_applied(body)
    annotations = out["metadata"]["annotations"]
    assert json.loads(annotations[LAST_APPLIED]) == body
    assert {k: v for k, v in annotations.items() if k != LAST_APPLIED} == (
        (body.get("metadata") or {}).get("annotations") or {}
    )
    assert {k: v for k, v in out.items() if k != "metadata"} == {
        k: v for k, v in body.items() if k != "metadata"
    }
    assert json.dumps(body) == before  # the caller's manifest is untouched


def test_record_is_compact_and_sorted() -> None:
    out = with_last_applied({"metadata": {"name": "p"}, "kind": "Pod"})
    assert out["metadata"]["annotations"][LAST_APPLIED] == '{"kind":"Pod","metadata":{"name":"p"}}'


POD_V1 = {
    "kind": "Pod",
    "metadata": {"name": "p", "labels": {"app": "web", "tier": "fe"}},
    "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeSelector": {"disk": "ssd"}},
}
POD_V2 = {
    "kind": "Pod",
    "metadata": {"name": "p", "labels": {"app": "web"}},
    "spec": {"containers": [{"name": "c", "image": "nginx:2"}]},
}


@pytest.mark.parametrize(
    ("last_applied", "expected_nulls"),
    [
        (json.dumps(POD_V1), {"metadata": {"labels": {"tier": None}}, "spec": {"nodeSelector": None}}),
        (json.dumps(POD_V2), {}),
        # a missing, garbage or non-object record falls back to a two-way patch: nothing is removed
        (None, {}),
        ("", {}),
        ("{not json", {}),
        ("[1, 2]", {}),
        ("null", {}),
    ],
    ids=["dropped-fields", "same", "none", "empty", "garbage", "list", "null"],
)
def test_apply_patch(last_applied: str | None, expected_nulls: dict[str, Any]) -> None:
    patch = apply_patch(POD_V2, last_applied)
    assert patch == deep_merge(expected_nulls, with_last_applied(POD_V2))
    assert json.loads(patch["metadata"]["annotations"][LAST_APPLIED]) == POD_V2


def test_apply_patch_removes_annotations_when_the_map_is_dropped() -> None:
    last = {"kind": "Pod", "metadata": {"name": "p", "annotations": {"team": "x"}}}
    body = {"kind": "Pod", "metadata": {"name": "p"}}
    patch = apply_patch(body, json.dumps(last))
    assert patch["metadata"]["annotations"].get("team", "kept") is None


def test_with_last_applied_does_not_nest_records() -> None:
    once = with_last_applied({"kind": "Pod", "metadata": {"name": "p"}})
    twice = with_last_applied(once)
    assert twice == once


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "metadata",
    [
        [1, 2],
        "web",
        5,
        {"name": "web", "annotations": "a=b"},
        {"name": "web", "annotations": [1]},
        {"annotations": 7},
    ],
)
def test_metadata_that_is_no_mapping_is_left_for_the_api_to_reject(metadata: Any) -> None:
    """Found by fuzzing: `steer apply` failed with an internal error (AttributeError, TypeError)
    where it should have sent the object and shown the API's answer, which names the field."""
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata}
    assert with_last_applied(body) == body
    assert apply_patch(body, json.dumps({"metadata": {"annotations": {"a": "b"}}})) == body
    assert apply_patch(body, None) == body


def test_read_a_file_with_several_documents(tmp_path: Path) -> None:
    f = write(tmp_path / "app.yaml", "kind: Pod\nmetadata: {name: a}\n---\nkind: Service\n")
    found = read([str(f)])
    assert [(m.source, m.body["kind"]) for m in found] == [(str(f), "Pod"), (str(f), "Service")]


def test_read_a_file_of_any_suffix(tmp_path: Path) -> None:
    f = write(tmp_path / "manifest.txt", '{"kind": "Pod"}')
    assert [m.body for m in read([str(f)])] == [{"kind": "Pod"}]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(tmp_path / "b.yaml", "kind: B\n")
    write(tmp_path / "a.yml", "kind: A\n")
    write(tmp_path / "c.json", '{"kind": "C"}')
    write(tmp_path / "notes.txt", "kind: Ignored\n")
    write(tmp_path / "README.md", "# not a manifest: [\n")
    write(tmp_path / "sub" / "d.yaml", "kind: D\n")
    write(tmp_path / "sub" / "deeper" / "0.yaml", "kind: E\n")
    return tmp_path


@pytest.mark.parametrize(
    ("recursive", "kinds"),
    [(False, ["A", "B", "C"]), (True, ["A", "B", "C", "D", "E"])],
)
def test_read_a_directory(tree: Path, recursive: bool, kinds: list[str]) -> None:
    found = read([str(tree)], recursive=recursive)
    assert [m.body["kind"] for m in found] == kinds
    assert all(Path(m.source).suffix in (".yaml", ".yml", ".json") for m in found)
    assert [m.source for m in found] == sorted(m.source for m in found)


def test_read_several_paths_in_order(tree: Path) -> None:
    found = read([str(tree / "c.json"), str(tree / "sub")])
    assert [m.body["kind"] for m in found] == ["C", "D"]


def test_read_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("kind: Pod\n---\nkind: Service\n"))
    found = read(["-"])
    assert [(m.source, m.body["kind"]) for m in found] == [("<stdin>", "Pod"), ("<stdin>", "Service")]


def test_read_a_missing_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(BadRequest) as caught:
        read([missing])
    assert caught.value.message == f'the path "{missing}" does not exist'


def test_read_an_undecodable_file(tmp_path: Path) -> None:
    f = tmp_path / "bin.yaml"
    f.write_bytes(b"\xff\xfe\x00kind")
    with pytest.raises(BadRequest, match=rf"^cannot read {re.escape(str(f))}: "):
        read([str(f)])


def test_malformed_file_names_its_source(tmp_path: Path) -> None:
    f = write(tmp_path / "bad.yaml", "a: [1\n")
    with pytest.raises(BadRequest, match=rf"^{re.escape(str(f))}: malformed YAML \(line 2"):
        read([str(f)])
