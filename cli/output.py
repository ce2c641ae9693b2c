"""Printing objects: rich tables for people; json, yaml and name for programs."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Literal

from rich.console import Console
from rich.table import Table

from bus import kinds
from bus.codec import to_builtins, to_json, to_yaml
from bus.meta import Resource
from cli import columns

Format = Literal["table", "wide", "json", "yaml", "name"]
FORMATS = ("wide", "json", "yaml", "name")

stdout = Console(highlight=False, soft_wrap=True)


def name_of(obj: Resource) -> str:
    """`pod/web-1`, `deployment.apps/web`: what `-o name` and apply print."""
    return f"{kinds.of(obj).qualified}/{obj.metadata.name}"


def as_list(items: Sequence[Resource], resource_version: str = "") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": resource_version},
        "items": [to_builtins(item) for item in items],
    }


def print_objects(
    items: Sequence[Resource],
    info: kinds.KindInfo,
    *,
    fmt: Format,
    single: bool = False,
    all_namespaces: bool = False,
    resource_version: str = "",
) -> None:
    match fmt:
        case "json":
            print(to_json(items[0] if single else as_list(items, resource_version)))
        case "yaml":
            sys.stdout.write(to_yaml(items[0] if single else as_list(items, resource_version)))
        case "name":
            for item in items:
                print(name_of(item))
        case _:
            print_table(items, info, wide=fmt == "wide", all_namespaces=all_namespaces)


def print_table(items: Sequence[Resource], info: kinds.KindInfo, *, wide: bool, all_namespaces: bool) -> None:
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for name in columns.header(info, wide=wide, all_namespaces=all_namespaces):
        table.add_column(
            name, overflow="fold" if name == "MESSAGE" else "ellipsis", no_wrap=name != "MESSAGE"
        )
    for item in items:
        table.add_row(*columns.row(item, wide=wide, all_namespaces=all_namespaces))
    stdout.print(table)


class RowPrinter:
    """Rows printed one at a time (watch mode), aligned to the widths seen so far."""

    def __init__(self, headers: list[str]) -> None:
        self.widths = [len(h) for h in headers]
        self.printed_header = False
        self.headers = headers

    def print(self, row: list[str]) -> None:
        if not self.printed_header:
            self.widths = [max(w, len(c)) + 2 for w, c in zip(self.widths, row, strict=False)]
            self._line(self.headers)
            self.printed_header = True
        self._line(row)

    def _line(self, cells: list[str]) -> None:
        # A cell wider than its column still keeps two spaces before the next one.
        padded = [
            cell.ljust(width) if len(cell) < width else cell + "  "
            for cell, width in zip(cells[:-1], self.widths, strict=False)
        ]
        print(("".join(padded) + cells[-1]).rstrip(), flush=True)
