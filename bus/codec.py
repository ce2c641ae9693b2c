"""Encoding resources for the wire (JSON) and for people (YAML), and reading manifests.

The wire format is msgspec JSON, which any NATS client in any language can read. Manifests may be
multi-document YAML or JSON, and may hold a Kubernetes `List` with `items`.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import msgspec
import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode

from bus.errors import BadRequest

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_TOP_ORDER = ("apiVersion", "kind", "metadata")

try:  # the C loader is several times faster where libyaml is present
    _Loader: Any = yaml.CSafeLoader
    _Dumper: Any = yaml.CSafeDumper
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader
    _Dumper = yaml.SafeDumper


class _StrictLoader(_Loader):
    """Refuses a mapping that names a key twice, as kubectl does; PyYAML keeps the last one
    silently, and a manifest would then not say what it seems to say."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.value == "<<":
                continue
            if key_node.value in seen:
                raise ConstructorError(
                    None, None, f'mapping key "{key_node.value}" is given twice', key_node.start_mark
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def encode(obj: Any) -> bytes:
    return _encoder.encode(obj)


def decode(data: bytes, type_: type[T]) -> T:
    return msgspec.json.decode(data, type=type_)


def to_builtins(obj: Any) -> Any:
    """Plain dicts and lists, with apiVersion, kind and metadata first as people expect."""
    value = msgspec.to_builtins(obj)
    if isinstance(value, dict):
        ordered = {k: value[k] for k in _TOP_ORDER if k in value}
        ordered.update((k, v) for k, v in value.items() if k not in ordered)
        return ordered
    return value


def to_yaml(value: Any) -> str:
    return yaml.dump(to_builtins(value), Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def to_json(value: Any) -> str:
    return msgspec.json.format(encode(to_builtins(value)), indent=2).decode()


def load_documents(text: str, *, source: str = "<stdin>") -> list[dict[str, Any]]:
    """Every object in a YAML or JSON text; a `List` is flattened into its items.

    A text that is one JSON document is read as JSON, as kubectl does: YAML reads JSON too, but
    refuses some valid JSON (an emoji escaped as a surrogate pair, `\\ud83d\\ude42`)."""
    docs = _json_document(text, source)
    if docs is None:
        docs = _yaml_documents(text, source)
    objects: list[dict[str, Any]] = []
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise BadRequest(f"{source}: document {index + 1} is a {type(doc).__name__}, not an object")
        if doc.get("kind") == "List" or (str(doc.get("kind", "")).endswith("List") and "items" in doc):
            items = doc.get("items") or []
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise BadRequest(f"{source}: document {index + 1}: items must be a list of objects")
            objects.extend(items)
        else:
            objects.append(doc)
    return objects


def _json_document(text: str, source: str) -> list[Any] | None:
    """The one document of a JSON text, or None when the text is not JSON (then it is YAML)."""
    if not text.lstrip().startswith(("{", "[")):
        return None
    try:
        document = msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return None  # YAML will say what is wrong, with a line number
    try:
        json.loads(text, object_pairs_hook=_unique_keys)  # it decodes: only its keys are in question
    except _DuplicateKey as err:
        raise BadRequest(f'{source}: malformed JSON: key "{err.key}" is given twice in one object') from None
    return [document]


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen.add(key)
    return dict(pairs)


def _yaml_documents(text: str, source: str) -> list[Any]:
    try:
        return list(yaml.load_all(text, Loader=_StrictLoader))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise BadRequest(f"{source}: malformed YAML{where}: {problem}") from None
    except ValueError as err:  # a number Python will not convert: over 4,300 digits
        raise BadRequest(f"{source}: malformed YAML: {str(err).split(':')[0]}") from None
    except RecursionError:
        raise BadRequest(f"{source}: malformed YAML: nested too deeply") from None
