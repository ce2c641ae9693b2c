"""JSON merge patch against RFC 7386, appendix A, and the nesting Kubernetes objects need."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from services.api.patch import merge_patch

# RFC 7386 appendix A, verbatim: (original, patch, result)
RFC_7386_EXAMPLES = [
    ('{"a":"b"}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"b"}', '{"b":"c"}', '{"a":"b","b":"c"}'),
    ('{"a":"b"}', '{"a":null}', "{}"),
    ('{"a":"b","b":"c"}', '{"a":null}', '{"b":"c"}'),
    ('{"a":["b"]}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"c"}', '{"a":["b"]}', '{"a":["b"]}'),
    ('{"a": {"b": "c"}}', '{"a": {"b": "d", "c": null}}', '{"a": {"b": "d"}}'),
    ('{"a": [{"b":"c"}]}', '{"a": [1]}', '{"a": [1]}'),
    ('["a","b"]', '["c","d"]', '["c","d"]'),
    ('{"a":"b"}', '["c"]', '["c"]'),
    ('{"a":"foo"}', "null", "null"),
    ('{"a":"foo"}', '"bar"', '"bar"'),
    ('{"e":null}', '{"a":1}', '{"e":null,"a":1}'),
    ("[1,2]", '{"a":"b","c":null}', '{"a":"b"}'),
    ("{}", '{"a":{"bb":{"ccc":null}}}', '{"a":{"bb":{}}}'),
]


@pytest.mark.parametrize(("original", "patch", "result"), RFC_7386_EXAMPLES)
def test_rfc_7386_appendix_a(original: str, patch: str, result: str) -> None:
    assert merge_patch(json.loads(original), json.loads(patch)) == json.loads(result)


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        # nulls deep inside remove only their own key
        (
            {"spec": {"template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}}}},
            {"spec": {"template": {"metadata": {"labels": {"tier": None}}}}},
            {"spec": {"template": {"metadata": {"labels": {"app": "web"}}}}},
        ),
        # removing a key that is not there is a no-op
        ({"a": {"b": 1}}, {"a": {"zzz": None}}, {"a": {"b": 1}}),
        ({"a": 1}, {"x": {"y": None}}, {"a": 1, "x": {}}),
        # a null at the top of a subtree removes all of it
        (
            {"metadata": {"labels": {"a": "1"}, "name": "x"}},
            {"metadata": {"labels": None}},
            {"metadata": {"name": "x"}},
        ),
        # mixed set, replace and remove in one patch
        (
            {"spec": {"replicas": 1, "paused": True, "strategy": {"type": "Recreate"}}},
            {"spec": {"replicas": 3, "paused": None, "strategy": {"rollingUpdate": {"maxSurge": 1}}}},
            {"spec": {"replicas": 3, "strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}},
        ),
        # an object replaces a scalar, and a nested null inside the new object is dropped
        ({"a": 5}, {"a": {"b": None, "c": 1}}, {"a": {"c": 1}}),
        # lists are replaced whole, never merged
        ({"ports": [{"port": 80}, {"port": 443}]}, {"ports": [{"port": 8080}]}, {"ports": [{"port": 8080}]}),
        # falsy values other than null are values
        ({"a": 1, "b": "x", "c": True}, {"a": 0, "b": "", "c": False}, {"a": 0, "b": "", "c": False}),
        ({"a": {"b": 1}}, {"a": {}}, {"a": {"b": 1}}),
        ({"a": {"b": 1}}, {}, {"a": {"b": 1}}),
        (None, {"a": None, "b": 2}, {"b": 2}),
    ],
)
def test_nested(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


@pytest.mark.parametrize(("original", "patch", "_result"), RFC_7386_EXAMPLES)
def test_inputs_are_not_mutated(original: str, patch: str, _result: str) -> None:
    target, change = json.loads(original), json.loads(patch)
    before_target, before_change = copy.deepcopy(target), copy.deepcopy(change)
    merge_patch(target, change)
    assert (target, change) == (before_target, before_change)


def test_nested_target_is_not_mutated() -> None:
    target = {"spec": {"labels": {"a": "1", "b": "2"}}}
    merge_patch(target, {"spec": {"labels": {"a": None, "c": "3"}}})
    assert target == {"spec": {"labels": {"a": "1", "b": "2"}}}
