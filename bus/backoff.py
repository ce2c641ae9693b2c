"""Jittered exponential back-off for retrying against the bus.

Every component retries the same things at the same moments (a server came back, a bucket
appeared): without jitter they would all knock at once, and without a cap an outage of any
length would leave them sleeping long after the server returned. A delay doubles from `first`
up to `cap`, and each is drawn from its upper half, so a retry never waits longer than `cap`
after the thing it waits for is there again, and a thousand retries spread over half of that.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    first: float = 0.05
    cap: float = 1.0
    attempts: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.cap:
            raise ValueError(f"need 0 < first <= cap, got first={self.first} cap={self.cap}")

    def ceiling(self) -> float:
        """The most the next delay may be."""
        return min(self.cap, self.first * 2 ** min(self.attempts, 64))

    def next(self) -> float:
        """The delay before the next attempt (and count it)."""
        ceiling = self.ceiling()
        self.attempts += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """The thing worked: start again from `first` next time."""
        self.attempts = 0
