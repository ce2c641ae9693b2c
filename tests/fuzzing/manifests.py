"""Manifests as users write them, generated from the resource types, then mutated.

`manifest(kind)` follows the msgspec Structs of bus/resources field by field (names where names
go, label-shaped keys, int32 ranges, the enum values), so most of what it draws gets past the
structural checks and exercises the rules. `mutated(...)` then breaks it the ways real input
breaks: wrong types, missing and extra fields, huge and unicode values, deep nesting. `text(...)`
renders documents as `steer apply` reads them, with duplicate keys and junk documents mixed in.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime
from typing import Any

import msgspec.inspect as mi
import yaml
from hypothesis import strategies as st

from bus import kinds

Json = Any

LABEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True)
NAMES = st.one_of(LABEL, st.sampled_from(["web", "web-1", "db", "a", "x" * 63]))
QUALIFIED_KEY = st.one_of(LABEL, st.builds(lambda p, n: f"{p}.io/{n}", LABEL, LABEL))
UNICODE = st.text(st.characters(codec="utf-8"), max_size=12)
SCALARS: st.SearchStrategy[Json] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    UNICODE,
)
JSON_VALUES: st.SearchStrategy[Json] = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(UNICODE, inner, max_size=3)),
    max_leaves=8,
)
# Values past every limit: long strings, integers beyond int32 and int64, NUL bytes, odd text.
HOSTILE: st.SearchStrategy[Json] = st.one_of(
    st.integers(min_value=0, max_value=6).map(lambda p: "x" * (10**p)),
    st.sampled_from(
        [
            2**31,
            2**63,
            2**64,
            10**30,
            -(2**63) - 1,
            -1,
            0,
            1.5,
            1e300,
            "a\x00b",
            "\u202eevil",
            "🙂" * 100,
            "line\r\nPUB x 1",
            "*",
            ">",
            "a.b",
            "",
            " ",
            [],
            {},
            None,
            True,
        ]
    ),
)


def _string_for(field: str) -> st.SearchStrategy[str]:
    if field in ("name", "namespace", "nodeName", "hostname", "generateName", "containerName"):
        return st.one_of(NAMES, NAMES, UNICODE)
    if field in ("image",):
        return st.sampled_from(["busybox:local", "nginx:1.27", "registry.example.com/app:v1"])
    if field in ("cpu", "memory", "averageValue", "value"):
        return st.sampled_from(["100m", "1", "64Mi", "1Gi", "0.5", "-1", "1e3", "lots"])
    return st.one_of(NAMES, UNICODE)


def _for(t: mi.Type, field: str, depth: int) -> st.SearchStrategy[Json]:
    match t:
        case mi.StrType():
            return _string_for(field)
        case mi.BoolType():
            return st.booleans()
        case mi.IntType():
            low = t.ge if t.ge is not None else -(2**31)
            high = t.le if t.le is not None else 2**31 - 1
            return st.one_of(st.integers(0, 100), st.integers(low, high))
        case mi.FloatType():
            return st.floats(0, 1e6)
        case mi.LiteralType():
            return st.sampled_from([v for v in t.values if v != ""] or [""])
        case mi.DateTimeType():
            return st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
                lambda d: d.replace(tzinfo=UTC).isoformat()
            )
        case mi.NoneType():
            return st.none()
        case mi.UnionType():
            return st.one_of([_for(x, field, depth) for x in t.types if not isinstance(x, mi.NoneType)])
        case mi.ListType():
            if depth > 6:
                return st.just([])
            return st.lists(_for(t.item_type, field, depth + 1), max_size=2)
        case mi.DictType():
            values = _for(t.value_type, field, depth + 1)
            return st.dictionaries(QUALIFIED_KEY, values, max_size=3)
        case mi.StructType():
            return _struct(t.cls, depth)
    return JSON_VALUES


@functools.cache
def _struct(cls: type, depth: int) -> st.SearchStrategy[dict[str, Json]]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    required: dict[str, st.SearchStrategy[Json]] = {}
    optional: dict[str, st.SearchStrategy[Json]] = {}
    for f in info.fields:
        if f.encode_name in ("apiVersion", "kind", "status") and depth == 0:
            continue
        target = required if f.required else optional
        target[f.encode_name] = _for(f.type, f.encode_name, depth + 1)
    return st.fixed_dictionaries(required, optional=optional)


KINDS = [info.kind for info in kinds.KINDS]


@st.composite
def manifest(draw: st.DrawFn, kind: str | None = None) -> dict[str, Json]:
    """A manifest of `kind` (or of any kind) that follows its type."""
    info = kinds.BY_KIND[kind or draw(st.sampled_from(KINDS))]
    body = draw(_struct(info.type, 0))
    metadata = body.setdefault("metadata", {})
    if isinstance(metadata, dict):
        metadata["name"] = draw(NAMES)
        metadata.pop("namespace", None)
        for server_set in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp"):
            metadata.pop(server_set, None)
    return {"apiVersion": info.api_version, "kind": info.kind, **body}


def _paths(value: Json, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `value` (dict keys and list indexes), down to depth 30."""
    found = [prefix]
    if len(prefix) >= 30:
        return found
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _replace(value: Json, path: tuple[Any, ...], new: Json) -> Json:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value.get(head), rest, new)}
    copy = list(value)
    copy[head] = _replace(value[head], rest, new)
    return copy


def _delete(value: Json, path: tuple[Any, ...]) -> Json:
    if len(path) == 1:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k != path[0]}
        return [v for i, v in enumerate(value) if i != path[0]]
    head = path[0]
    if isinstance(value, dict):
        return {**value, head: _delete(value[head], path[1:])}
    copy = list(value)
    copy[head] = _delete(value[head], path[1:])
    return copy


# Deep nesting is drawn as a placeholder and written out only in the text (a value thousands of
# levels deep would overflow the recursion of every printer on the way, hypothesis' included).
DEEP = "__deep_{}__"
_DEEP_TOKEN = re.compile(r'"?__deep_(\d+)__"?')


def nested_text(depth: int) -> str:
    """`depth` levels of lists and objects, as JSON (which is YAML too)."""
    opening = "".join('{"a": ' if i % 2 else "[" for i in range(depth))
    closing = "".join("}" if i % 2 else "]" for i in reversed(range(depth)))
    return f"{opening}1{closing}"


MUTATIONS = ("wrong type", "missing", "extra", "hostile", "unicode", "deep", "none")


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Json]) -> tuple[str, dict[str, Json]]:
    """`base` broken in one to three ways; the names of the mutations and the result.

    Where and how are picked uniformly (hypothesis' own draws favour the first choices, and a
    fuzzer wants every field broken as often as any other)."""
    pick = draw(st.randoms(use_true_random=False))
    done: list[str] = []
    value: Json = base
    for _ in range(pick.randint(1, 3)):
        how = pick.choice(MUTATIONS)
        paths = _paths(value)[1:] or [()]  # not the document itself: junk documents do that
        path = pick.choice(paths)
        match how:
            case "wrong type":
                value = _replace(value, path, draw(JSON_VALUES))
            case "missing" if path:
                value = _delete(value, path)
            case "extra":
                objects = [p for p in [(), *paths] if isinstance(_get(value, p), dict)]
                if objects:
                    where = pick.choice(objects)
                    key = draw(st.one_of(UNICODE, st.sampled_from(["spex", "volumes", "status", "kind"])))
                    value = _replace(value, (*where, key), draw(JSON_VALUES))
            case "hostile":
                value = _replace(value, path, draw(HOSTILE))
            case "unicode":
                value = _replace(value, path, draw(UNICODE))
            case "deep":
                value = _replace(value, path, DEEP.format(pick.choice([10, 100, 900, 1500, 5000])))
        done.append(how)
    return "+".join(done), value if isinstance(value, dict) else {"junk": value}


def _get(value: Json, path: tuple[Any, ...]) -> Json:
    for step in path:
        value = value[step]
    return value


JUNK_DOCUMENTS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "- a\n- b\n",
            "just a string\n",
            "42\n",
            "{{{\n",
            "a: [1, 2\n",
            "!!python/object:os.system {}\n",
            "&a [*a]\n",
            "kind: List\nitems: 5\n",
            "kind: PodList\nitems: [1, 2]\n",
            "\t\tkind: Pod\n",
            "a: 1" + "0" * 5000 + "\n",
            "a: " + "[" * 5000 + "]" * 5000 + "\n",
            '"\\ud800": x\n',
            "---\n---\n...\n",
        ]
    ),
)


def _yaml(body: Json) -> str:
    try:
        return yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=10**6)
    except (yaml.YAMLError, ValueError):
        return json.dumps(body, default=str)


def _deepen(text: str) -> str:
    return _DEEP_TOKEN.sub(lambda m: nested_text(int(m.group(1))), text)


@st.composite
def text(draw: st.DrawFn, bodies: list[Json]) -> str:
    """Documents as a manifest file holds them: YAML or JSON, some with a key written twice,
    some junk documents in between."""
    docs: list[str] = []
    for body in bodies:
        if draw(st.booleans()):
            rendered = _deepen(_yaml(body))
        else:  # JSON, non-ASCII escaped or not (YAML refuses surrogate-pair escapes in a stream)
            rendered = _deepen(json.dumps(body, default=str, ensure_ascii=draw(st.booleans())))
        if draw(st.integers(0, 4)) == 0 and not rendered.startswith(("{", "[")):
            key = draw(
                st.sampled_from(["kind: Pod", "apiVersion: v1", "metadata: {name: twice}", "spec: {}"])
            )
            rendered = f"{rendered}{key}\n"  # a duplicate top-level key
        docs.append(rendered)
        if draw(st.integers(0, 6)) == 0:
            docs.append(draw(JUNK_DOCUMENTS))
    return "\n---\n".join(docs)
