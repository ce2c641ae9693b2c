"""Options shared by several commands, declared once."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from bus import kinds
from bus.errors import BadRequest

Namespace = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="Namespace (default: $STEER_NAMESPACE or 'default')."),
]
AllNamespaces = Annotated[bool, typer.Option("--all-namespaces", "-A", help="Across all namespaces.")]
Files = Annotated[
    list[str] | None, typer.Option("--filename", "-f", help="Manifest file, directory, or - for stdin.")
]
Recursive = Annotated[bool, typer.Option("--recursive", "-R", help="Read directories recursively.")]
Selector = Annotated[str, typer.Option("--selector", "-l", help="Label selector, e.g. app=web,tier!=db.")]


def namespace_or_default(namespace: str | None) -> str:
    return namespace or os.environ.get("STEER_NAMESPACE") or "default"


def split_target(kind: str, names: list[str]) -> tuple[kinds.KindInfo, list[str]]:
    """`pod web`, `pods web db` or `pod/web`: the kind and the names."""
    if "/" in kind:
        kind, _, name = kind.partition("/")
        if not name:
            raise BadRequest(f'"{kind}/" names no object')
        names = [name, *names]
    return kinds.resolve(kind), names
