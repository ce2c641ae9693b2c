"""`steer events`: the event stream, replayed from a point in time and followed live."""

from __future__ import annotations

from typing import Annotated

import typer

from bus import events as bus_events
from bus import kinds, subjects
from bus.errors import BadRequest, Unavailable
from bus.resources import Event
from cli import columns, output
from cli.durations import parse_duration
from cli.errors import run_async
from cli.options import AllNamespaces, Namespace, namespace_or_default
from cli.session import session


def event_filter(namespace: str | None, all_namespaces: bool, target: str | None) -> str:
    """The subject filter for the events wanted: a namespace, everything, or one object."""
    if target:
        kind, _, name = target.partition("/")
        if not name:
            raise BadRequest(f'--for takes KIND/NAME, e.g. pod/web-1 (got "{target}")')
        info = kinds.resolve(kind)
        ns = namespace_or_default(namespace) if info.namespaced else None
        return subjects.events_filter(ns, info.kind, name)
    if all_namespaces:
        return subjects.events_filter()
    return subjects.events_filter(namespace_or_default(namespace))


@run_async
async def events(
    namespace: Namespace = None,
    all_namespaces: AllNamespaces = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep printing new events.")] = False,
    since: Annotated[str | None, typer.Option(help="Only events newer than this, e.g. 10m or 1h.")] = None,
    target: Annotated[str | None, typer.Option("--for", help="Only events about KIND/NAME.")] = None,
    out: Annotated[str, typer.Option("--output", "-o", help="json or yaml.")] = "",
) -> int:
    """Show events, oldest first; with -w, keep following new ones."""
    try:
        window = parse_duration(since) if since else None
    except ValueError as err:
        raise BadRequest(str(err)) from None
    subject_filter = event_filter(namespace, all_namespaces, target)
    headers = (["NAMESPACE"] if all_namespaces else []) + ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    printer = output.RowPrinter(headers)
    seen = 0
    async with session() as s:
        js = s.nc.jetstream(timeout=s.client.timeout)
        async for event in bus_events.read(js, subject_filter=subject_filter, since=window, follow=watch):
            seen += 1
            _print(event, printer, out, all_namespaces)
        if watch:  # a follower resumes by itself; one that ends could not
            raise Unavailable("the watch ended")
    if not seen and not watch:
        print("No events found.", flush=True)
    return 0


def _print(event: Event, printer: output.RowPrinter, out: str, all_namespaces: bool) -> None:
    if out in ("json", "yaml"):
        output.print_objects([event], kinds.BY_KIND["Event"], fmt=out, single=True)  # type: ignore[arg-type]
        return
    printer.print(([event.metadata.namespace] if all_namespaces else []) + columns.event_row(event))
