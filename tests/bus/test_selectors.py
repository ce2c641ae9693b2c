import pytest

from bus.meta import LabelSelector, LabelSelectorRequirement
from bus.selectors import Operator, Requirement, from_label_selector, matches, parse, to_string

R = Requirement
Op = Operator


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("   ", ()),
        ("app=web", (R("app", Op.EQUALS, ("web",)),)),
        ("app==web", (R("app", Op.DOUBLE_EQUALS, ("web",)),)),
        ("tier!=db", (R("tier", Op.NOT_EQUALS, ("db",)),)),
        ("app=", (R("app", Op.EQUALS, ("",)),)),
        ("release", (R("release", Op.EXISTS),)),
        ("!legacy", (R("legacy", Op.DOES_NOT_EXIST),)),
        ("env in (a,b)", (R("env", Op.IN, ("a", "b")),)),
        ("env notin (a, b ,c)", (R("env", Op.NOT_IN, ("a", "b", "c")),)),
        ("env in ()", (R("env", Op.IN, ("",)),)),
        ("example.com/tier=front", (R("example.com/tier", Op.EQUALS, ("front",)),)),
        (
            "app=web,tier!=db,env in (a,b),!legacy,release",
            (
                R("app", Op.EQUALS, ("web",)),
                R("tier", Op.NOT_EQUALS, ("db",)),
                R("env", Op.IN, ("a", "b")),
                R("legacy", Op.DOES_NOT_EXIST),
                R("release", Op.EXISTS),
            ),
        ),
        (" app = web , ! legacy ", (R("app", Op.EQUALS, ("web",)), R("legacy", Op.DOES_NOT_EXIST))),
    ],
)
def test_parse(text: str, expected: tuple[Requirement, ...]) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("app=web,", "found end of string, expected: label key"),
        (",app", "found ',', expected: label key"),
        ("=web", "found '=', expected: label key"),
        ("!", "found end of string, expected: label key"),
        ("env in a", "found 'a', expected: '('"),
        ("env in (a", "found end of string, expected: ',' or ')'"),
        ("env in (a b)", "found 'b', expected: ',' or ')'"),
        ("app web", "found 'web', expected: '=', '==', '!=', 'in', 'notin'"),
        ("replicas > 3", "found '>'"),
        ("app=web tier", "found 'tier', expected: ',' or end of string"),
        ("App_=web", "invalid label key 'App_'"),
        ("a/b/c=d", "invalid label key 'a/b/c'"),
        ("Example.com/tier=x", "prefix part a lowercase RFC 1123 subdomain"),
        ("app=-web", "invalid label value '-web' for key 'app'"),
        ("app in (ok,bad_)", "invalid label value 'bad_'"),
        ("app=" + "x" * 64, "must be no more than 63 characters"),
    ],
)
def test_parse_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as err:
        parse(text)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("key", "operator", "values", "fragment"),
    [
        ("app", Op.IN, (), "values set can't be empty"),
        ("app", Op.NOT_IN, (), "values set can't be empty"),
        ("app", Op.EQUALS, ("a", "b"), "one single value"),
        ("app", Op.NOT_EQUALS, (), "one single value"),
        ("app", Op.EXISTS, ("a",), "values set must be empty"),
        ("app", Op.DOES_NOT_EXIST, ("a",), "values set must be empty"),
        ("", Op.EXISTS, (), "invalid label key ''"),
    ],
)
def test_requirement_rejects(key: str, operator: Operator, values: tuple[str, ...], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Requirement(key, operator, values)


WEB = {"app": "web", "tier": "front", "env": "prod"}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("", {}, True),
        ("", WEB, True),
        ("app=web", WEB, True),
        ("app==web", WEB, True),
        ("app=db", WEB, False),
        ("app=web", {}, False),
        ("app!=db", WEB, True),
        ("app!=web", WEB, False),
        ("app!=web", {}, True),
        ("env in (prod,staging)", WEB, True),
        ("env in (dev)", WEB, False),
        ("env in (dev)", {}, False),
        ("env notin (dev)", WEB, True),
        ("env notin (prod)", WEB, False),
        ("env notin (prod)", {}, True),
        ("tier", WEB, True),
        ("tier", {}, False),
        ("!legacy", WEB, True),
        ("!tier", WEB, False),
        ("app=web,tier=front,env in (prod),!legacy", WEB, True),
        ("app=web,tier=back", WEB, False),
        ("app=", {"app": ""}, True),
        ("app=", {}, False),
    ],
)
def test_matches(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert matches(parse(selector), labels) is expected


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (LabelSelector(), ()),
        (LabelSelector(match_labels={"app": "web"}), (R("app", Op.EQUALS, ("web",)),)),
        (
            LabelSelector(
                match_labels={"app": "web"},
                match_expressions=[
                    LabelSelectorRequirement(key="env", operator="In", values=["a", "b"]),
                    LabelSelectorRequirement(key="tier", operator="NotIn", values=["db"]),
                    LabelSelectorRequirement(key="canary", operator="Exists"),
                    LabelSelectorRequirement(key="legacy", operator="DoesNotExist"),
                ],
            ),
            (
                R("app", Op.EQUALS, ("web",)),
                R("env", Op.IN, ("a", "b")),
                R("tier", Op.NOT_IN, ("db",)),
                R("canary", Op.EXISTS),
                R("legacy", Op.DOES_NOT_EXIST),
            ),
        ),
    ],
)
def test_from_label_selector(selector: LabelSelector, expected: tuple[Requirement, ...]) -> None:
    assert from_label_selector(selector) == expected


@pytest.mark.parametrize(
    "selector",
    [
        LabelSelector(match_labels={"app": "web_"}),
        LabelSelector(match_expressions=[LabelSelectorRequirement(key="env", operator="In")]),
        LabelSelector(
            match_expressions=[LabelSelectorRequirement(key="env", operator="Exists", values=["a"])]
        ),
    ],
)
def test_from_label_selector_rejects(selector: LabelSelector) -> None:
    with pytest.raises(ValueError):
        from_label_selector(selector)


@pytest.mark.parametrize(
    ("selector", "text"),
    [
        (LabelSelector(), "<none>"),
        ((), "<none>"),
        (LabelSelector(match_labels={"tier": "front", "app": "web"}), "app=web,tier=front"),
        (
            LabelSelector(
                match_labels={"app": "web"},
                match_expressions=[
                    LabelSelectorRequirement(key="env", operator="NotIn", values=["b", "a"]),
                    LabelSelectorRequirement(key="canary", operator="Exists"),
                    LabelSelectorRequirement(key="legacy", operator="DoesNotExist"),
                ],
            ),
            "app=web,canary,env notin (a,b),!legacy",
        ),
        (parse("tier!=db,app==web"), "app==web,tier!=db"),
    ],
)
def test_to_string(selector: LabelSelector | tuple[Requirement, ...], text: str) -> None:
    assert to_string(selector) == text


@pytest.mark.parametrize("text", ["app=web,canary,env in (a,b),!legacy,tier!=db", "a==b", "x notin (p,q)"])
def test_to_string_round_trips(text: str) -> None:
    assert to_string(parse(text)) == text
