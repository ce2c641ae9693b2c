"""Field selectors (`spec.nodeName=node-1,status.phase!=Running`), as Kubernetes supports them.

Only the fields Kubernetes itself indexes are selectable; any other is an error naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bus.meta import Resource

Getter = Callable[[Resource], str]

_COMMON: dict[str, Getter] = {
    "metadata.name": lambda o: o.metadata.name,
    "metadata.namespace": lambda o: o.metadata.namespace,
}
_BY_KIND: dict[str, dict[str, Getter]] = {
    "Pod": {
        "spec.nodeName": lambda o: o.spec.node_name,  # type: ignore[attr-defined]
        "status.phase": lambda o: o.status.phase,  # type: ignore[attr-defined]
    },
    "Event": {
        "involvedObject.kind": lambda o: o.involved_object.kind,  # type: ignore[attr-defined]
        "involvedObject.name": lambda o: o.involved_object.name,  # type: ignore[attr-defined]
        "reason": lambda o: o.reason,  # type: ignore[attr-defined]
        "type": lambda o: o.type,  # type: ignore[attr-defined]
    },
    "Node": {"spec.unschedulable": lambda o: str(o.spec.unschedulable).lower()},  # type: ignore[attr-defined]
}


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    value: str
    equal: bool
    get: Getter

    def matches(self, obj: Resource) -> bool:
        return (self.get(obj) == self.value) == self.equal


FieldSelector = tuple[FieldRequirement, ...]


def parse(text: str, kind: str) -> FieldSelector:
    """Requirements of a field selector for objects of `kind`; ValueError naming what is wrong."""
    getters = {**_COMMON, **_BY_KIND.get(kind, {})}
    requirements = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        field, value, equal = _split(part)
        if field not in getters:
            supported = ", ".join(sorted(getters))
            raise ValueError(
                f'"{field}" is not a supported field selector for {kind} (supported: {supported})'
            )
        requirements.append(FieldRequirement(field, value.strip(), equal, getters[field]))
    return tuple(requirements)


def _split(part: str) -> tuple[str, str, bool]:
    for op, equal in (("!=", False), ("==", True), ("=", True)):
        field, found, value = part.partition(op)
        if found:
            return field.strip(), value, equal
    raise ValueError(f'"{part}" is not field=value or field!=value')


def matches(selector: FieldSelector, obj: Resource) -> bool:
    return all(requirement.matches(obj) for requirement in selector)
