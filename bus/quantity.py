"""Kubernetes resource quantities: `500m`, `2`, `0.5`, `128Mi`, `1G`, `1e3`.

Manifests carry CPU and memory as strings in Kubernetes' quantity syntax so that ordinary
Kubernetes manifests apply unchanged. Parsing yields an exact `Fraction` (no float rounding:
`0.1` CPU is exactly 100 millicores), and the integer views round up, as Kubernetes does, so a
request is never silently made smaller than what was asked for.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

__all__ = ["cpu_millis", "memory_bytes", "parse_quantity"]

_SUFFIXES: dict[str, Fraction] = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}

_MAX_EXPONENT = 64

_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:[eE](?P<exponent>[+-]?[0-9]+)|(?P<suffix>[KMGTPE]i|[numkMGTPE])?)"
)


def parse_quantity(text: str) -> Fraction:
    """The exact value of a quantity string; `ValueError` naming the string when it is not one."""
    match = _QUANTITY.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"invalid quantity {text!r}: expected a number with an optional suffix "
            "(n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei) or exponent, e.g. '500m', '128Mi', '1e3'"
        )
    number = Fraction(match["number"])
    if match["exponent"] is not None:
        exponent = int(match["exponent"])
        if abs(exponent) > _MAX_EXPONENT:  # a huge power of ten would only burn memory
            raise ValueError(f"invalid quantity {text!r}: exponent out of range (at most {_MAX_EXPONENT})")
        return number * Fraction(10) ** exponent
    return number * _SUFFIXES[match["suffix"] or ""]


def cpu_millis(text: str) -> int:
    """CPU in millicores (`"500m"` -> 500, `"2"` -> 2000), rounded up to a whole millicore."""
    return math.ceil(parse_quantity(text) * 1000)


def memory_bytes(text: str) -> int:
    """Memory in bytes (`"128Mi"` -> 134217728, `"1G"` -> 10**9), rounded up to a whole byte."""
    return math.ceil(parse_quantity(text))
