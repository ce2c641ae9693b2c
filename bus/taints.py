"""Taints and tolerations: the one matching rule the scheduler and the node lifecycle controller share."""

from __future__ import annotations

from bus.resources.cluster import Taint
from bus.resources.pod import Toleration


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """Kubernetes' matching of a toleration to a taint (empty effect or key with Exists: any)."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if not toleration.key:
        return toleration.operator == "Exists"
    if toleration.key != taint.key:
        return False
    return toleration.operator == "Exists" or toleration.value == taint.value
