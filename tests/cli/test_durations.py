"""The durations `steer events --since` and friends accept, in Go's style."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cli.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("10m", 600),
        ("1h30m", 5400),
        ("2d", 172800),
        ("500ms", 0.5),
        ("45", 45),
        ("10", 10),
        ("1h", 3600),
        ("1d2h3m4s", 86400 + 7200 + 180 + 4),
        ("1m30s", 90),
        ("1s500ms", 1.5),
        ("1.5h", 5400),
        ("0.5s", 0.5),
        ("90m", 5400),
        ("30m1h", 5400),  # Go allows units in any order and adds them
        ("1m1m", 120),
        (" 10m ", 600),
        ("\t5s\n", 5),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("", ""),
        ("   ", ""),
        ("ten", "ten"),
        ("10x", "10x"),
        ("1h 30m", "1h 30m"),
        ("-5m", "-5m"),
        ("+5m", "+5m"),
        ("m", "m"),
        ("5M", "5M"),
        ("1H", "1H"),
        ("1h30", "1h30"),
        ("s10", "s10"),
        ("1.h", "1.h"),
        (".5s", ".5s"),
        ("1e3s", "1e3s"),
        ("5 m", "5 m"),
        ("10mins", "10mins"),
        ("1w", "1w"),
    ],
)
def test_invalid_durations(text: str, shown: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == (
        f'invalid duration "{shown}": use a number with a unit, like 30s, 10m, 1h30m or 2d'
    )
