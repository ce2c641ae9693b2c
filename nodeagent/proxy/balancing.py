"""Choosing a backend for each new connection: round robin, or least connections.

A `Pool` is one Service port's backends and its balancing state; its listeners (the port and
the nodePort) share it. `candidates()` gives the order to try for one connection: the chosen
backend first, then the others, so that a backend that refuses is skipped for the next. New
backends take effect for new connections only: an open connection keeps the backend it has.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from nodeagent.proxy.routes import Backend

Policy = Literal["round-robin", "least-connections"]
POLICIES: tuple[Policy, ...] = ("round-robin", "least-connections")


class Pool:
    def __init__(self, backends: tuple[Backend, ...] = (), *, policy: Policy = "round-robin") -> None:
        self.backends = backends
        self.policy = policy
        self.active: Counter[Backend] = Counter()  # open connections per backend
        self._turn = 0

    def update(self, backends: tuple[Backend, ...]) -> None:
        self.backends = backends

    def candidates(self) -> list[Backend]:
        """Every backend, in the order to try them for one new connection."""
        n = len(self.backends)
        if n == 0:
            return []
        start = self._turn % n
        self._turn = start + 1
        rotated = list(self.backends[start:] + self.backends[:start])
        if self.policy == "least-connections":
            # Stable sort: among equally loaded backends the round-robin order decides.
            rotated.sort(key=lambda b: self.active[b])
        return rotated

    def opened(self, backend: Backend) -> None:
        self.active[backend] += 1

    def closed(self, backend: Backend) -> None:
        self.active[backend] -= 1
        if self.active[backend] <= 0:
            del self.active[backend]
