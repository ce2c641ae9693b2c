"""Label selectors: kubectl's string syntax, the `LabelSelector` of manifests, and matching.

Both forms turn into the same tuple of `Requirement`s, so `steer get pods -l 'app=web,env in (a,b)'`,
a Deployment's `spec.selector` and a Service's `spec.selector` all select through one `matches`.
A `Requirement` checks its key, operator and values when built, so a selector that exists is valid.

An empty selector matches everything, as in Kubernetes; workloads forbid an empty one in
validation rather than here.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bus.meta import LabelSelector
from bus.validation.rules import label_value, qualified_name

__all__ = ["Operator", "Requirement", "Selector", "from_label_selector", "matches", "parse", "to_string"]


class Operator(enum.StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="


_SET_OPERATORS = (Operator.IN, Operator.NOT_IN)
_EXACT_OPERATORS = (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS)
_KEY_OPERATORS = (Operator.EXISTS, Operator.DOES_NOT_EXIST)


@dataclass(frozen=True, slots=True)
class Requirement:
    """One condition on one label key; `ValueError` if key, operator and values do not fit."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if problems := qualified_name(self.key):
            raise ValueError(f"invalid label key {self.key!r}: {'; '.join(problems)}")
        if self.operator in _SET_OPERATORS and not self.values:
            raise ValueError(f"{self.key}: for 'in', 'notin' operators, values set can't be empty")
        if self.operator in _EXACT_OPERATORS and len(self.values) != 1:
            raise ValueError(f"{self.key}: exact-match compatibility requires one single value")
        if self.operator in _KEY_OPERATORS and self.values:
            raise ValueError(f"{self.key}: values set must be empty for exists and does not exist")
        for value in self.values:
            if problems := label_value(value):
                raise ValueError(f"invalid label value {value!r} for key {self.key!r}: {'; '.join(problems)}")

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        match self.operator:
            case Operator.IN | Operator.EQUALS | Operator.DOUBLE_EQUALS:
                return present and labels[self.key] in self.values
            case Operator.NOT_IN | Operator.NOT_EQUALS:
                return not present or labels[self.key] not in self.values
            case Operator.EXISTS:
                return present
            case Operator.DOES_NOT_EXIST:
                return not present

    def __str__(self) -> str:
        match self.operator:
            case Operator.EXISTS:
                return self.key
            case Operator.DOES_NOT_EXIST:
                return f"!{self.key}"
            case Operator.IN | Operator.NOT_IN:
                word = "in" if self.operator is Operator.IN else "notin"
                return f"{self.key} {word} ({','.join(sorted(self.values))})"
            case _:
                return f"{self.key}{self.operator.value}{self.values[0]}"


Selector = tuple[Requirement, ...]


def matches(requirements: Iterable[Requirement], labels: Mapping[str, str]) -> bool:
    """Whether `labels` satisfy every requirement (an empty selector matches everything)."""
    return all(req.matches(labels) for req in requirements)


def from_label_selector(selector: LabelSelector) -> Selector:
    """The requirements of a manifest's selector: matchLabels as `key=value`, then matchExpressions."""
    exact = [Requirement(key, Operator.EQUALS, (value,)) for key, value in selector.match_labels.items()]
    expressions = [
        Requirement(expr.key, Operator(expr.operator), tuple(expr.values))
        for expr in selector.match_expressions
    ]
    return (*exact, *expressions)


def to_string(selector: LabelSelector | Sequence[Requirement]) -> str:
    """kubectl's rendering: requirements sorted by key, `<none>` for the empty selector."""
    requirements = from_label_selector(selector) if isinstance(selector, LabelSelector) else selector
    text = ",".join(str(req) for req in sorted(requirements, key=lambda r: r.key))
    return text or "<none>"


# -- the string syntax: `app=web,tier!=db,env in (a,b),!legacy,release`

_TOKEN = re.compile(r"\s*(?:(?P<symbol>!=|==|=|!|\(|\)|,|<|>)|(?P<word>[^\s!=(),<>]+))")
_SYMBOLS = frozenset({"!=", "==", "=", "!", "(", ")", ",", "<", ">"})
_END = ""


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        found = _TOKEN.match(text, pos)
        if found is None:  # only trailing whitespace is left
            break
        tokens.append(found.group("symbol") or found.group("word"))
        pos = found.end()
    return tokens


def _is_word(token: str) -> bool:
    return token != _END and token not in _SYMBOLS


class _Parser:
    """Recursive descent over the tokens, one requirement per comma."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> str:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else _END

    def take(self) -> str:
        token = self.peek()
        self.pos += 1
        return token

    def fail(self, found: str, expected: str) -> ValueError:
        shown = f"'{found}'" if found else "end of string"
        return ValueError(f"invalid selector {self.text!r}: found {shown}, expected: {expected}")

    def word(self, expected: str) -> str:
        token = self.take()
        if not _is_word(token):
            raise self.fail(token, expected)
        return token

    def selector(self) -> Selector:
        requirements = [self.requirement()]
        while self.peek() == ",":
            self.take()
            requirements.append(self.requirement())
        if self.peek() != _END:
            raise self.fail(self.peek(), "',' or end of string")
        return tuple(requirements)

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            return Requirement(self.word("label key"), Operator.DOES_NOT_EXIST)
        key = self.word("label key")
        token = self.take()
        match token:
            case "," | "":
                self.pos -= 1
                return Requirement(key, Operator.EXISTS)
            case "=" | "==" | "!=":
                value = self.take() if _is_word(self.peek()) else ""
                return Requirement(key, Operator(token), (value,))
            case "in" | "notin":
                operator = Operator.IN if token == "in" else Operator.NOT_IN
                return Requirement(key, operator, self.value_set())
        raise self.fail(token, "'=', '==', '!=', 'in', 'notin', ',' or end of string")

    def value_set(self) -> tuple[str, ...]:
        if (token := self.take()) != "(":
            raise self.fail(token, "'('")
        values = [self.take() if _is_word(self.peek()) else ""]
        while self.peek() == ",":
            self.take()
            values.append(self.take() if _is_word(self.peek()) else "")
        if (token := self.take()) != ")":
            raise self.fail(token, "',' or ')'")
        return tuple(values)


def parse(text: str) -> Selector:
    """The requirements of a kubectl selector string; `ValueError` naming the problem."""
    if not text.strip():
        return ()
    return _Parser(text).selector()
