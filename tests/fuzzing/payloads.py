"""Raw payloads for the API's subjects, the node-scoped subjects and a node agent's logs/exec.

Request bodies are drawn field by field from the shapes bus/protocol.py and bus/streams.py
define, with every field also given values of the wrong type, past the limits, or malformed
(bad resourceVersions, bad selectors, 5,000-character names, bad continue tokens); and whole
payloads are drawn as random bytes, truncated JSON, deep nesting and sizes up to 10 MB.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from bus import kinds, subjects
from tests.fuzzing import manifests

LONG_NAME = "a" * 5000
ODD_STRINGS = st.one_of(
    manifests.UNICODE,
    st.sampled_from(
        [
            "",
            " ",
            LONG_NAME,
            "a" * 254,
            "web\x00",
            "we b",
            "*",
            ">",
            "a..b",
            ".a",
            "a/b",
            "Web_1",
            "\r\nPUB x 1\r\n",
            "é",
            "🙂",
        ]
    ),
)
WRONG_TYPES: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.lists(st.integers(), max_size=2),
    st.just({}),
)
RESOURCE_VERSIONS = st.one_of(
    st.sampled_from(["", "1", "2", "0", "-1", "abc", "1.5", "99999999999999999999", "9" * 5000, "١", " 1"]),
    st.integers(-5, 10).map(str),
    WRONG_TYPES,
)
LABEL_SELECTORS = st.one_of(
    st.sampled_from(
        [
            "",
            "app=web",
            "app in (web,db),tier!=front",
            "!legacy",
            "app in (",
            "app notin ()",
            "a=b=c",
            "=",
            ",,,",
            "!!!",
            "a" * 5000 + "=b",
            "app=" + "v" * 5000,
            "app in (" + ",".join(str(i) for i in range(5000)) + ")",
            "app=web," * 2000,
            "Ω=ω",
            "app==web",
            "app!=",
        ]
    ),
    manifests.UNICODE,
)
FIELD_SELECTORS = st.one_of(
    st.sampled_from(
        [
            "",
            "metadata.name=web",
            "spec.nodeName=n1",
            "status.phase!=Running",
            "bogus=1",
            "metadata.name",
            "metadata.name==a==b",
            "spec.nodeName=" + "n" * 5000,
            "metadata.name=a," * 3000,
            "involvedObject.kind=Pod",
        ]
    ),
    manifests.UNICODE,
)
CONTINUE_TOKENS = st.one_of(
    st.sampled_from(["", "x", "not-a-token", "=" * 10, "a" * 5000, "eyJydiI6IDF9", "eyJ9"]),
    st.builds(
        lambda rv, ns, name: (
            base64.urlsafe_b64encode(json.dumps({"rv": rv, "ns": ns, "name": name}).encode())
            .decode()
            .rstrip("=")
        ),
        st.one_of(st.just("1"), WRONG_TYPES),
        ODD_STRINGS,
        ODD_STRINGS,
    ),
    manifests.UNICODE,
)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`strategy`, or (about one time in four) a value of some other type."""
    return st.one_of(strategy, strategy, strategy, WRONG_TYPES)


def _request(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A request object: any subset of its fields, sometimes with an unknown one added."""
    extra = st.dictionaries(st.sampled_from(["nope", "Name", "kind", "metadata"]), WRONG_TYPES, max_size=1)
    return st.builds(lambda known, more: {**known, **more}, st.fixed_dictionaries({}, optional=fields), extra)


def names(existing: list[str]) -> st.SearchStrategy[Any]:
    return _maybe(st.one_of(st.sampled_from(existing), manifests.NAMES, ODD_STRINGS))


def request_body(verb: str, existing: list[str]) -> st.SearchStrategy[Any]:
    """The JSON value of a request body for `verb` (before encoding)."""
    name = names(existing)
    match verb:
        case "get":
            return _request({"name": name})
        case "delete":
            return _request(
                {
                    "name": name,
                    "resourceVersion": RESOURCE_VERSIONS,
                    "gracePeriodSeconds": _maybe(st.integers(-(2**65), 2**65)),
                    "propagationPolicy": _maybe(
                        st.sampled_from(["Background", "Foreground", "Orphan", "Bogus"])
                    ),
                }
            )
        case "list":
            return _request(
                {
                    "labelSelector": _maybe(LABEL_SELECTORS),
                    "fieldSelector": _maybe(FIELD_SELECTORS),
                    "limit": _maybe(st.integers(-(2**65), 2**65)),
                    "continue": _maybe(CONTINUE_TOKENS),
                }
            )
        case "patch":
            patch = st.one_of(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "metadata": _maybe(
                            st.fixed_dictionaries(
                                {},
                                optional={
                                    "resourceVersion": RESOURCE_VERSIONS,
                                    "name": name,
                                    "labels": manifests.JSON_VALUES,
                                    "finalizers": manifests.JSON_VALUES,
                                },
                            )
                        ),
                        "spec": manifests.JSON_VALUES,
                        "status": manifests.JSON_VALUES,
                        "kind": manifests.JSON_VALUES,
                        "apiVersion": manifests.JSON_VALUES,
                    },
                ),
                manifests.JSON_VALUES,
                st.sampled_from([manifests.DEEP.format(n) for n in (100, 1500, 5000)]),
            )
            return _request({"name": name, "patch": patch})
    # create, update, status: an object
    return st.one_of(
        manifests.manifest().flatmap(manifests.mutated).map(lambda pair: pair[1]),
        manifests.manifest(),
        manifests.JSON_VALUES,
    )


def encode(value: Any) -> bytes:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return manifests._deepen(text).encode("utf-8", "surrogatepass")


RAW_BYTES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b"{}",
            b'"x"',
            b"1e999",
            b"{{{",
            b"\xff\xfe\x00",
            b'{"name": "\\ud800"}',
            b"[" * 100_000,
            b"[" * 5000 + b"]" * 5000,
            b'{"a":' * 5000 + b"1" + b"}" * 5000,
            b'{"name": 1' + b"0" * 5000 + b"}",
        ]
    ),
    # Sizes up to and past the server's max_payload (4 MiB): the largest never leave the client.
    st.sampled_from([1024 * 1024 + 1, 3 * 1024 * 1024, 4 * 1024 * 1024 + 1, 10 * 1024 * 1024]).map(
        lambda n: b'{"name": "' + b"x" * n + b'"}'
    ),
)


@st.composite
def truncated(draw: st.DrawFn, body: bytes) -> bytes:
    return body[: draw(st.integers(0, max(0, len(body) - 1)))] if body else body


@st.composite
def payload(draw: st.DrawFn, verb: str, existing: list[str]) -> bytes:
    """A request body for `verb`: well-formed JSON of the right shape or not, truncated, or raw."""
    roll = draw(st.randoms(use_true_random=False)).random()
    if roll < 0.75:
        return encode(draw(request_body(verb, existing)))
    if roll < 0.9:
        return draw(truncated(encode(draw(request_body(verb, existing)))))
    return draw(RAW_BYTES)


PLURALS = [info.plural for info in kinds.KINDS]
ODD_TOKENS = ["widgets", "Pods", "pod", "x" * 200, "é", "🙂", "_", "_all", "-"]
ODD_VERBS = ["watch", "GET", "x" * 100, "feed", "logs"]
ODD_NAMESPACES = ["_", "_all", "default", "nowhere", "Bad_NS", "n" * 64, "n" * 3800, "é", "🙂"]


@dataclass(frozen=True)
class Target:
    """Where a payload goes: the subject, and the kind and namespace it reads or writes."""

    subject: str
    verb: str
    plural: str
    namespace: str
    served: bool = True  # whether the API listens on this subject (it knows only its verbs)


@st.composite
def api_target(draw: st.DrawFn, namespace: str, node: str | None = None) -> Target:
    """An API subject (or, with `node`, a node-scoped one): mostly well-formed, some not."""
    pick = draw(st.randoms(use_true_random=False))
    verb = pick.choice(subjects.API_VERBS) if pick.random() < 0.9 else pick.choice(ODD_VERBS)
    plural = pick.choice(PLURALS) if pick.random() < 0.9 else pick.choice(ODD_TOKENS)
    token = namespace if pick.random() < 0.7 else pick.choice(ODD_NAMESPACES)
    if node is None:
        subject = f"{subjects.PREFIX}.api.{verb}.{plural}.{token}"
        served = verb in subjects.API_VERBS
    else:
        who = node if pick.random() < 0.8 else pick.choice(["other-node", "N1", "n" * 3700, "é"])
        if len(who) + len(token) > 3800:  # the publisher's own protocol line must fit in 4 KiB
            token = namespace
        subject = f"{subjects.PREFIX}.node.{who}.{verb}.{plural}.{token}"
        served = True
    return Target(subject, verb, plural, subjects.unscope(token), served)


# -- a node agent's own subjects (bus/streams.py)

FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -1.0, 1e12, 1e300, 1e-300, 86400.0, 2.0**63]),
    st.integers(-(2**70), 2**70),
)


def _logs_body(pods: list[tuple[str, str]], wrap: Any) -> st.SearchStrategy[dict[str, Any]]:
    fields = {
        "container": wrap(st.one_of(st.sampled_from(["", "main", "nope"]), ODD_STRINGS)),
        "follow": wrap(st.booleans()),
        "tail": wrap(st.one_of(st.none(), st.integers(-(2**70), 2**70))),
        "sinceSeconds": wrap(st.one_of(st.none(), FLOATS)),
        "previous": wrap(st.booleans()),
    }
    return st.builds(
        lambda at, rest, ns, pod: {"namespace": ns if ns is not None else at[0], "pod": pod or at[1], **rest},
        st.sampled_from(pods),
        st.fixed_dictionaries({}, optional=fields),
        st.one_of(st.none(), st.none(), wrap(ODD_STRINGS)),
        st.one_of(st.none(), st.none(), wrap(ODD_STRINGS)),
    )


def _exec_body(pods: list[tuple[str, str]], wrap: Any) -> st.SearchStrategy[dict[str, Any]]:
    fields = {
        "container": wrap(st.one_of(st.sampled_from(["", "main", "nope"]), ODD_STRINGS)),
        "timeoutSeconds": wrap(st.one_of(st.sampled_from([0.001, 0.5, 1.0, 0.0, -1.0, 1e12, 1e300]), FLOATS)),
    }
    command = wrap(
        st.one_of(st.just(["true"]), st.lists(ODD_STRINGS, max_size=3), st.just([]), st.just(["x" * 100_000]))
    )
    return st.builds(
        lambda at, cmd, rest: {"namespace": at[0], "pod": at[1], "command": cmd, **rest},
        st.sampled_from(pods),
        command,
        st.fixed_dictionaries({}, optional=fields),
    )


@st.composite
def _mixed(draw: st.DrawFn, typed: st.SearchStrategy[Any], loose: st.SearchStrategy[Any]) -> bytes:
    """Half well-typed requests (extreme values of the right types), a quarter with wrong types,
    the rest cut short or raw bytes."""
    roll = draw(st.randoms(use_true_random=False)).random()
    if roll < 0.5:
        return encode(draw(typed))
    if roll < 0.75:
        return encode(draw(loose))
    if roll < 0.9:
        return draw(truncated(encode(draw(loose))))
    return draw(RAW_BYTES)


def _same(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy


def logs_request(pods: list[tuple[str, str]]) -> st.SearchStrategy[bytes]:
    """A LogsRequest for one of `pods` (bus/streams.py), or not quite one."""
    return _mixed(_logs_body(pods, _same), _logs_body(pods, _maybe))


def exec_request(pods: list[tuple[str, str]]) -> st.SearchStrategy[bytes]:
    """An ExecRequest for one of `pods`, or not quite one."""
    return _mixed(_exec_body(pods, _same), _exec_body(pods, _maybe))
