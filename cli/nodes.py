"""`steer cordon` and `steer uncordon`: mark a node (un)schedulable."""

from __future__ import annotations

from typing import Annotated

import typer

from bus.resources import Node
from cli.errors import run_async
from cli.session import session

NodeName = Annotated[str, typer.Argument(help="Node name.")]


async def _set_unschedulable(name: str, value: bool) -> str:
    async with session() as s:
        before = await s.client.get(Node, name.removeprefix("node/"), "")
        if before.spec.unschedulable == value:
            return f"node/{before.metadata.name} already {'cordoned' if value else 'uncordoned'}"
        await s.client.patch(Node, before.metadata.name, {"spec": {"unschedulable": value or None}}, "")
        return f"node/{before.metadata.name} {'cordoned' if value else 'uncordoned'}"


@run_async
async def cordon(node: NodeName) -> int:
    """Mark a node unschedulable: new pods are not placed there (running ones stay)."""
    print(await _set_unschedulable(node, True))
    return 0


@run_async
async def uncordon(node: NodeName) -> int:
    """Mark a node schedulable again."""
    print(await _set_unschedulable(node, False))
    return 0
