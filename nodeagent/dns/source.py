"""Where the DNS server learns Services and Endpoints: a small protocol, and what satisfies it.

The server only reads, and reads on every question, so a source is a view over caches someone
else keeps current (the node agent's mirrors of the API's cluster feed), never a fetch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from bus.resources import Endpoints, Service
from nodeagent.proxy.mirror import Mirror


class Source(Protocol):
    def service(self, namespace: str, name: str) -> Service | None: ...

    def endpoints(self, namespace: str, name: str) -> Endpoints | None: ...

    def services(self) -> Iterable[Service]:
        """Every Service (to tell a namespace that holds Services from one that does not)."""
        ...


class MirrorSource:
    """The node agent's mirrors (the service proxy keeps one per kind) as a source."""

    def __init__(self, services: Mirror[Service], endpoints: Mirror[Endpoints]) -> None:
        self._services = services
        self._endpoints = endpoints

    def service(self, namespace: str, name: str) -> Service | None:
        return self._services.get((namespace, name))

    def endpoints(self, namespace: str, name: str) -> Endpoints | None:
        return self._endpoints.get((namespace, name))

    def services(self) -> Iterable[Service]:
        return list(self._services.objects.values())


class Snapshot:
    """A fixed set of Services and Endpoints."""

    def __init__(self, services: Iterable[Service] = (), endpoints: Iterable[Endpoints] = ()) -> None:
        self._services = {(s.metadata.namespace, s.metadata.name): s for s in services}
        self._endpoints = {(e.metadata.namespace, e.metadata.name): e for e in endpoints}

    def service(self, namespace: str, name: str) -> Service | None:
        return self._services.get((namespace, name))

    def endpoints(self, namespace: str, name: str) -> Endpoints | None:
        return self._endpoints.get((namespace, name))

    def services(self) -> Iterable[Service]:
        return list(self._services.values())
