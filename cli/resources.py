"""`steer get` and `steer describe`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bus import events as bus_events
from bus import kinds, subjects
from bus.codec import to_builtins, to_json, to_yaml
from bus.errors import BadRequest, Unavailable
from bus.meta import Resource
from cli import columns, output
from cli.errors import run_async, stderr
from cli.options import AllNamespaces, Namespace, Selector, namespace_or_default, split_target
from cli.session import Session, session

Output = Annotated[str, typer.Option("--output", "-o", help="wide, json, yaml or name.")]
Watch = Annotated[bool, typer.Option("--watch", "-w", help="After listing, print changes as they happen.")]


def _format(value: str) -> output.Format:
    if value and value not in output.FORMATS:
        raise BadRequest(f'unknown output format "{value}": use one of {", ".join(output.FORMATS)}')
    return value or "table"  # type: ignore[return-value]


@run_async
async def get(
    kind: Annotated[
        str, typer.Argument(help="Kind (pods, po, deploy, ...), KIND/NAME, or kinds joined by commas.")
    ],
    names: Annotated[list[str] | None, typer.Argument(help="Names of objects.")] = None,
    namespace: Namespace = None,
    all_namespaces: AllNamespaces = False,
    selector: Selector = "",
    out: Output = "",
    watch: Watch = False,
) -> int:
    """Show objects of a kind, as a table or as json, yaml or names."""
    fmt = _format(out)
    if "," in kind:
        if names or watch or "/" in kind:
            raise BadRequest("several kinds (a,b) can only be listed, without names and without --watch")
        targets: list[tuple[kinds.KindInfo, list[str]]] = [
            (kinds.resolve(k), []) for k in kind.split(",") if k
        ]
    else:
        targets = [split_target(kind, names or [])]
    ns = subjects.ALL if all_namespaces else namespace_or_default(namespace)
    async with session() as s:
        if watch:
            info, wanted = targets[0]
            await _watch(s, info, ns, set(wanted), selector, fmt, all_namespaces)
            return 0
        listed = [(info, await _fetch(s, info, ns, wanted, selector)) for info, wanted in targets]
    single = len(targets) == 1 and len(targets[0][1]) == 1
    if fmt in ("json", "yaml", "name") or len(listed) == 1:
        items = [item for _, (found, _) in listed for item in found]
        version = listed[0][1][1] if len(listed) == 1 else ""
        if not items and fmt in ("table", "wide"):
            _nothing_found(targets[0][0], ns)
            return 0
        output.print_objects(
            items,
            listed[0][0],
            fmt=fmt,
            single=single,
            all_namespaces=ns == subjects.ALL,
            resource_version=version,
        )
        return 0
    shown = False
    for info, (found, _) in listed:
        if found:
            if shown:
                print()
            output.print_objects(found, info, fmt=fmt, all_namespaces=ns == subjects.ALL)
            shown = True
    if not shown:
        _nothing_found(targets[0][0], ns)
    return 0


async def _fetch(
    s: Session, info: kinds.KindInfo, ns: str, wanted: list[str], selector: str
) -> tuple[list[Resource], str]:
    if wanted:
        namespace = "default" if ns == subjects.ALL else ns
        return [await s.client.get_kind(info, name, namespace) for name in wanted], ""
    return await s.client.list_kind(info, ns, label_selector=selector)


def _nothing_found(info: kinds.KindInfo, ns: str) -> None:
    where = "any namespace" if ns == subjects.ALL else f"{ns} namespace"
    print(f"No resources found in {where}." if info.namespaced else "No resources found.", file=sys.stderr)


async def _watch(
    s: Session,
    info: kinds.KindInfo,
    ns: str,
    names: set[str],
    selector: str,
    fmt: output.Format,
    every_ns: bool,
) -> None:
    from bus.selectors import matches, parse

    try:
        requirements = parse(selector) if selector else None
    except ValueError as err:
        raise BadRequest(f"invalid label selector: {err}") from None
    printer = output.RowPrinter(columns.header(info, wide=fmt == "wide", all_namespaces=every_ns))
    interrupted = False
    async for event in s.store.watch(info.type, ns if info.namespaced else subjects.ALL):
        obj = event.object
        if event.type == "STALE":
            interrupted = True
            stderr.print("watch interrupted: lost the connection to NATS; it resumes where it left off")
            continue
        if event.type == "SYNCED":
            if interrupted:
                interrupted = False
                stderr.print("watch resumed")
            continue
        if obj is None:
            continue
        if names and obj.metadata.name not in names:
            continue
        if requirements is not None and not matches(requirements, obj.metadata.labels):
            continue
        match fmt:
            case "json":
                print(to_json(obj), flush=True)
            case "yaml":
                print("---\n" + to_yaml(obj), end="", flush=True)
            case "name":
                print(output.name_of(obj), flush=True)
            case _:
                printer.print(columns.row(obj, wide=fmt == "wide", all_namespaces=every_ns))
    # A watch resumes by itself; one that ends could not (the connection closed for good).
    raise Unavailable("the watch ended")


@run_async
async def describe(
    kind: Annotated[str, typer.Argument(help="Kind or KIND/NAME.")],
    names: Annotated[list[str] | None, typer.Argument(help="Names of objects.")] = None,
    namespace: Namespace = None,
    selector: Selector = "",
) -> int:
    """Show an object in detail, with its recent events."""
    info, wanted = split_target(kind, names or [])
    ns = namespace_or_default(namespace)
    async with session() as s:
        if wanted:
            items = [await s.client.get_kind(info, name, ns) for name in wanted]
        else:
            items, _ = await s.client.list_kind(info, ns, label_selector=selector)
        for index, obj in enumerate(items):
            if index:
                print()
            await _describe_one(s, info, obj)
    return 0


async def _describe_one(s: Session, info: kinds.KindInfo, obj: Resource) -> None:
    meta = obj.metadata
    lines = [("Name", meta.name)]
    if info.namespaced:
        lines.append(("Namespace", meta.namespace))
    lines += [
        ("Kind", f"{obj.kind} ({obj.api_version})"),
        ("Labels", _pairs(meta.labels)),
        ("Annotations", _pairs({k: v for k, v in meta.annotations.items() if "last-applied" not in k})),
        (
            "Created",
            f"{meta.creation_timestamp:%Y-%m-%dT%H:%M:%SZ} ({columns.age(meta.creation_timestamp)} ago)"
            if meta.creation_timestamp
            else "<unknown>",
        ),
        ("UID", meta.uid),
        ("Resource Version", meta.resource_version),
        ("Generation", str(meta.generation)),
    ]
    if meta.deletion_timestamp is not None:
        lines.append(("Terminating", f"since {meta.deletion_timestamp:%Y-%m-%dT%H:%M:%SZ}"))
    if meta.owner_references:
        lines.append(("Controlled By", ", ".join(f"{o.kind}/{o.name}" for o in meta.owner_references)))
    width = max(len(k) for k, _ in lines) + 2
    for key, value in lines:
        print(f"{key + ':':<{width}}{value}")
    body = to_builtins(obj)
    for section in ("spec", "status"):
        if body.get(section):
            print(f"{section.capitalize()}:")
            print(_indent(to_yaml(body[section])))
    for field in ("involvedObject", "reason", "message", "subsets"):
        if field in body and info.kind in ("Event", "Endpoints"):
            print(f"{field}:")
            print(_indent(to_yaml(body[field])))
    await _print_events(s, info, obj)


async def _print_events(s: Session, info: kinds.KindInfo, obj: Resource) -> None:
    if info.kind == "Event":
        return
    ns = obj.metadata.namespace if info.namespaced else None
    try:
        subject_filter = subjects.events_filter(ns, info.kind, obj.metadata.name)
    except BadRequest:  # a name no event subject can hold (an IPAddress's dots): it has none
        print("Events:  <none>")
        return
    found = []
    js = s.nc.jetstream(timeout=s.client.timeout)
    async for event in bus_events.read(js, subject_filter=subject_filter):
        found.append(event)
    if not found:
        print("Events:  <none>")
        return
    print("Events:")
    printer = output.RowPrinter(["  Type", "Reason", "Age", "From", "Message"])
    for event in found[-20:]:
        printer.print(
            [
                "  " + event.type,
                event.reason,
                columns.age(event.last_timestamp),
                event.source.component,
                event.message,
            ]
        )


def _pairs(values: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items())) or "<none>"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.rstrip().splitlines())
