"""Reading manifests from files, directories and stdin, and kubectl's three-way apply patch."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus.codec import load_documents
from bus.errors import BadRequest

LAST_APPLIED = "steersman.io/last-applied-configuration"
_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Manifest:
    source: str
    body: dict[str, Any]


def read(paths: list[str], *, recursive: bool = False) -> list[Manifest]:
    """Every object in the given files (`-` is stdin; a directory means its manifest files)."""
    manifests: list[Manifest] = []
    for path in paths:
        for source, text in _texts(path, recursive=recursive):
            manifests += [Manifest(source, body) for body in load_documents(text, source=source)]
    return manifests


def _texts(path: str, *, recursive: bool) -> list[tuple[str, str]]:
    if path == "-":
        return [("<stdin>", sys.stdin.read())]
    p = Path(path)
    if p.is_dir():
        pattern = "**/*" if recursive else "*"
        files = sorted(f for f in p.glob(pattern) if f.is_file() and f.suffix in _SUFFIXES)
        return [(str(f), _read_file(f)) for f in files]
    if not p.exists():
        raise BadRequest(f'the path "{path}" does not exist')
    return [(path, _read_file(p))]


def _read_file(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise BadRequest(f"cannot read {path}: {err}") from None


def removals(last: Any, new: Any) -> dict[str, Any]:
    """Nulls for every field the last applied manifest had and the new one drops."""
    out: dict[str, Any] = {}
    if not isinstance(last, dict) or not isinstance(new, dict):
        return out
    for key, value in last.items():
        if key not in new:
            out[key] = None
        elif isinstance(value, dict) and isinstance(new[key], dict):
            nested = removals(value, new[key])
            if nested:
                out[key] = nested
    return out


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def _annotated(body: dict[str, Any], record: str | None) -> dict[str, Any]:
    """`body` with the last-applied annotation set to `record` (or removed when None).

    A body whose metadata or annotations are not mappings is left as it is: the API rejects it
    with a cause naming the field, which says more than anything we could say here."""
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        return body
    found = metadata.get("annotations") or {}
    if not isinstance(found, dict):
        return body
    metadata = dict(metadata)
    annotations = {k: v for k, v in found.items() if k != LAST_APPLIED}
    if record is not None:
        annotations[LAST_APPLIED] = record
    metadata["annotations"] = annotations
    return {**body, "metadata": metadata}


def _annotations(body: dict[str, Any]) -> dict[str, Any]:
    metadata = body.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    return annotations if isinstance(annotations, dict) else {}


def with_last_applied(body: dict[str, Any]) -> dict[str, Any]:
    """The manifest, annotated with itself (as kubectl apply records what it applied).

    A record already in the manifest (say, from `steer get -o yaml`) is left out of the new one,
    so records never nest.
    """
    clean = body
    if LAST_APPLIED in _annotations(body):
        clean = _annotated(body, None)
        if not clean["metadata"]["annotations"]:
            del clean["metadata"]["annotations"]
    record = json.dumps(clean, sort_keys=True, separators=(",", ":"), default=str)
    return _annotated(body, record)


def apply_patch(body: dict[str, Any], last_applied: str | None) -> dict[str, Any]:
    """Merge patch that makes the live object match `body`, dropping what the last apply set."""
    try:
        last = json.loads(last_applied) if last_applied else {}
    except ValueError:
        last = {}  # a hand-edited record: fall back to a two-way apply
    if not isinstance(last, dict):
        last = {}
    new = with_last_applied(body)
    # Both sides carry the annotation map, so dropped annotations come out as nulls inside it
    # instead of a null for the whole map that the new record would override.
    return deep_merge(removals(_annotated(last, ""), new), new)
