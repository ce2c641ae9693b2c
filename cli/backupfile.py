"""The backup file of `steer backup` and `steer restore`: JSON lines, one object a line.

```
{"kind": "SteerBackup", "version": 1, "createdAt": "...", "skippedKinds": ["Event", "Lease"]}
{"apiVersion": "v1", "kind": "Namespace", "metadata": {..., "resourceVersion": "7"}, ...}
...
{"kind": "SteerBackupEnd", "objects": 42, "resourceVersions": {"namespaces": "9", ...}}
```

JSON lines because each object is exactly what the API serves (any tool reads it, `grep` and
`jq` work on it) and a file of any size is written and checked one line at a time. The closing
line counts the objects, so a file cut short (a full disk, a copy stopped half-way) is refused
as a whole instead of half restored. A file is read and checked completely, every object
against its kind's schema, before anything is written to a cluster.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import msgspec

from bus import kinds
from bus.codec import encode
from bus.errors import BadRequest, SteerError
from bus.meta import Resource
from bus.validation import decode_object

FORMAT_VERSION = 1
HEADER_KIND = "SteerBackup"
END_KIND = "SteerBackupEnd"


class BackupFileError(BadRequest):
    """A backup file that cannot be read: names the file and, where it applies, the line."""

    def __init__(self, path: str, problem: str, *, line: int = 0) -> None:
        where = f"{path}, line {line}" if line else path
        super().__init__(f"{where}: {problem}")


@dataclass
class Backup:
    """What a backup file holds; `lines` gives each object's line, for messages."""

    objects: list[Resource] = field(default_factory=list)
    lines: dict[int, int] = field(default_factory=dict)  # id(object) -> its line in the file
    created_at: str = ""
    resource_versions: dict[str, str] = field(default_factory=dict)


class Writer:
    """Writes a backup file line by line; `close` adds the closing line and puts the file in place.

    The file is written beside its final name and renamed at the end, so a backup that fails
    half-way never leaves a file that looks whole (nor replaces the previous good one).
    """

    def __init__(self, path: str, *, skipped_kinds: list[str]) -> None:
        self.path = path
        self.count = 0
        self._partial = f"{path}.partial"
        self._out: IO[bytes] = open(self._partial, "wb")  # noqa: SIM115 (closed in close/abort)
        header = {
            "kind": HEADER_KIND,
            "version": FORMAT_VERSION,
            "createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "skippedKinds": skipped_kinds,
        }
        self._line(header)

    def _line(self, value: Any) -> None:
        self._out.write(encode(value) + b"\n")

    def add(self, obj: Resource) -> None:
        self._line(obj)
        self.count += 1

    def close(self, resource_versions: dict[str, str]) -> None:
        self._line({"kind": END_KIND, "objects": self.count, "resourceVersions": resource_versions})
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        self._out.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._partial)


def read(path: str) -> Backup:
    """Every object of the backup file at `path`, checked; BackupFileError at the first fault."""
    try:
        with open(path, "rb") as source:
            return _parse(path, _numbered(source))
    except OSError as err:
        raise BackupFileError(path, f"cannot read it: {err.strerror or err}") from None


def _numbered(source: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(source, start=1):
        if line.strip():
            yield number, line


def _parse(path: str, lines: Iterator[tuple[int, bytes]]) -> Backup:
    backup = Backup()
    seen: dict[tuple[str, str, str], int] = {}
    header_seen = False
    end: dict[str, Any] | None = None
    last = 0
    for number, line in lines:
        last = number
        if end is not None:
            raise BackupFileError(path, f"text after the closing {END_KIND} line", line=number)
        try:
            raw = msgspec.json.decode(line)
        except msgspec.DecodeError as err:
            raise BackupFileError(path, f"not JSON: {err}", line=number) from None
        if not isinstance(raw, dict):
            raise BackupFileError(path, "each line must be a JSON object", line=number)
        kind = raw.get("kind")
        if not header_seen:
            _check_header(path, raw, number)
            backup.created_at = str(raw.get("createdAt", ""))
            header_seen = True
        elif kind == END_KIND:
            end = raw
        else:
            obj = _decode(path, raw, number)
            key = (obj.kind, obj.metadata.namespace, obj.metadata.name)
            if key in seen:
                raise BackupFileError(path, f"{_show(obj)} already appears on line {seen[key]}", line=number)
            seen[key] = number
            backup.objects.append(obj)
            backup.lines[id(obj)] = number
    if not header_seen:
        raise BackupFileError(path, "empty: not a steersman backup")
    if end is None:
        raise BackupFileError(path, f"no closing {END_KIND} line: the file is incomplete", line=last)
    if end.get("objects") != len(backup.objects):
        raise BackupFileError(
            path,
            f"the closing line counts {end.get('objects')} objects but the file holds "
            f"{len(backup.objects)}: it is incomplete or was edited",
            line=last,
        )
    versions = end.get("resourceVersions")
    if isinstance(versions, dict):
        backup.resource_versions = {str(k): str(v) for k, v in versions.items()}
    return backup


def _check_header(path: str, raw: dict[str, Any], number: int) -> None:
    if raw.get("kind") != HEADER_KIND:
        problem = f'not a steersman backup (the first line has no "kind": "{HEADER_KIND}")'
        raise BackupFileError(path, problem, line=number)
    if raw.get("version") != FORMAT_VERSION:
        problem = f"backup format version {raw.get('version')!r} is not supported (only {FORMAT_VERSION})"
        raise BackupFileError(path, problem, line=number)


def _decode(path: str, raw: dict[str, Any], number: int) -> Resource:
    try:
        return decode_object(raw)
    except SteerError as err:
        causes = "; ".join(str(cause) for cause in err.causes)
        raise BackupFileError(path, err.message + (f": {causes}" if causes else ""), line=number) from None


def _show(obj: Resource) -> str:
    info = kinds.of(obj)
    where = f" in namespace {obj.metadata.namespace}" if info.namespaced else ""
    return f"{info.qualified}/{obj.metadata.name}{where}"
