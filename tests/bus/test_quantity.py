from fractions import Fraction

import pytest

from bus.quantity import cpu_millis, memory_bytes, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", Fraction(0)),
        ("2", Fraction(2)),
        ("0.5", Fraction(1, 2)),
        (".5", Fraction(1, 2)),
        ("5.", Fraction(5)),
        ("+3", Fraction(3)),
        ("-1", Fraction(-1)),
        ("100n", Fraction(1, 10**7)),
        ("250u", Fraction(1, 4000)),
        ("500m", Fraction(1, 2)),
        ("1k", Fraction(1000)),
        ("1M", Fraction(10**6)),
        ("1G", Fraction(10**9)),
        ("1T", Fraction(10**12)),
        ("1P", Fraction(10**15)),
        ("1E", Fraction(10**18)),
        ("1Ki", Fraction(1024)),
        ("128Mi", Fraction(128 * 2**20)),
        ("1.5Gi", Fraction(3 * 2**29)),
        ("1Ti", Fraction(2**40)),
        ("1Pi", Fraction(2**50)),
        ("1Ei", Fraction(2**60)),
        ("1e3", Fraction(1000)),
        ("1E3", Fraction(1000)),
        ("1e-3", Fraction(1, 1000)),
        ("2.5e+2", Fraction(250)),
    ],
)
def test_parse_quantity(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 1",
        "1 ",
        "abc",
        "Mi",
        ".",
        "1.2.3",
        "1KB",
        "1ki",
        "1mi",
        "1e",
        "1e3Mi",
        "1 Gi",
        "0x10",
        "1_000",
        "1e99999",
    ],
)
def test_parse_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid quantity"):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("text", "millis"),
    [("500m", 500), ("2", 2000), ("0.5", 500), ("1.5", 1500), ("100u", 1), ("1n", 1), ("0", 0), ("1e-3", 1)],
)
def test_cpu_millis_rounds_up(text: str, millis: int) -> None:
    assert cpu_millis(text) == millis


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("128Mi", 134217728),
        ("1G", 10**9),
        ("1Gi", 2**30),
        ("1k", 1000),
        ("1.5Ki", 1536),
        ("1500m", 2),
        ("1e3", 1000),
    ],
)
def test_memory_bytes_rounds_up(text: str, size: int) -> None:
    assert memory_bytes(text) == size
