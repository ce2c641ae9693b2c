"""Parsing the durations users type (`10m`, `1h30m`, `45s`, `2d`)."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """A positive duration in Go's style; ValueError naming the problem otherwise."""
    text = text.strip()
    if text.isdigit():
        return timedelta(seconds=int(text))
    pos, seconds = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f'invalid duration "{text}": use a number with a unit, like 30s, 10m, 1h30m or 2d')
    return timedelta(seconds=seconds)
