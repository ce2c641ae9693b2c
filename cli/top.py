"""`steer top nodes` and `steer top pods`: current CPU and memory use, as kubectl top shows it.

Node agents publish usage every few seconds (bus/metrics.py); the STEER_METRICS stream keeps the
latest sample of each node, so reading it answers at once. Samples older than a few publishing
intervals are left out: an agent that stopped must not look idle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated

import typer
from rich.table import Table

from bus import metrics, subjects
from bus.quantity import cpu_millis, memory_bytes
from bus.resources import Node
from cli import output
from cli.errors import fail, run_async, stderr
from cli.options import AllNamespaces, Namespace, namespace_or_default
from cli.session import session

app = typer.Typer(help="Show CPU and memory use of nodes or pods.", no_args_is_help=True)

SortBy = Annotated[str, typer.Option("--sort-by", help="Sort by cpu or memory (highest first).")]
NO_METRICS = (
    "metrics not available yet: no node agent has published usage in the last few intervals "
    "(agents publish every few seconds, unless started with --metrics-interval 0)"
)
Row = list[str]


def cpu(millicores: int) -> str:
    return f"{millicores}m"


def memory(size: int) -> str:
    return f"{size // (1 << 20)}Mi"


def percent(used: int, allocatable: int) -> str:
    return f"{used * 100 // allocatable}%" if allocatable > 0 else "<unknown>"


def node_rows(nodes: list[Node], samples: list[metrics.NodeMetrics], sort_by: str = "") -> list[Row]:
    """NAME CPU(cores) CPU% MEMORY(bytes) MEMORY%; nodes without a fresh sample come last."""
    by_name = {s.node: s for s in samples}
    measured = [(n, by_name[n.metadata.name]) for n in nodes if n.metadata.name in by_name]
    measured.sort(key=lambda pair: _sort_key(pair[1], sort_by, pair[0].metadata.name))
    rows = []
    for node, sample in measured:
        allocatable = node.status.allocatable or node.status.capacity
        rows.append(
            [
                node.metadata.name,
                cpu(sample.cpu_millicores),
                percent(sample.cpu_millicores, _quantity(allocatable.get("cpu"), cpu_millis)),
                memory(sample.memory_bytes),
                percent(sample.memory_bytes, _quantity(allocatable.get("memory"), memory_bytes)),
            ]
        )
    missing = sorted(n.metadata.name for n in nodes if n.metadata.name not in by_name)
    return rows + [[name, *["<unknown>"] * 4] for name in missing]


def pod_rows(
    samples: list[metrics.NodeMetrics],
    namespace: str,
    *,
    names: Iterable[str] = (),
    containers: bool = False,
    sort_by: str = "",
) -> list[Row]:
    """[NAMESPACE] NAME CPU(cores) MEMORY(bytes), or [NAMESPACE] POD NAME ... per container."""
    wanted = set(names)
    pods = [
        p
        for s in samples
        for p in s.pods
        if (namespace == subjects.ALL or p.namespace == namespace) and (not wanted or p.name in wanted)
    ]
    pods.sort(key=lambda p: _sort_key(p, sort_by, f"{p.namespace}/{p.name}"))
    prefix = (lambda p: [p.namespace]) if namespace == subjects.ALL else (lambda p: [])
    if containers:
        return [
            [*prefix(p), p.name, c.name, cpu(c.cpu_millicores), memory(c.memory_bytes)]
            for p in pods
            for c in p.containers
        ]
    return [[*prefix(p), p.name, cpu(p.cpu_millicores), memory(p.memory_bytes)] for p in pods]


def _sort_key(sample: metrics.NodeMetrics | metrics.PodMetrics, sort_by: str, name: str) -> tuple[int, str]:
    match sort_by:
        case "cpu":
            return (-sample.cpu_millicores, name)
        case "memory":
            return (-sample.memory_bytes, name)
    return (0, name)


def _quantity(value: str | None, parse: Callable[[str], int]) -> int:
    if not value:
        return 0
    try:
        return parse(value)
    except ValueError:
        return 0


def _check_sort(sort_by: str) -> None:
    if sort_by not in ("", "cpu", "memory"):
        raise fail(f'--sort-by: unknown field "{sort_by}" (use cpu or memory)', 2)


@app.command("nodes")
@run_async
async def nodes(
    names: Annotated[list[str] | None, typer.Argument(help="Node names (all when none).")] = None,
    sort_by: SortBy = "",
) -> int:
    """CPU and memory use of nodes, and their share of what the node offers to pods."""
    _check_sort(sort_by)
    async with session() as s:
        samples = [m for m in await metrics.latest_nodes(s.nc.jetstream()) if metrics.is_fresh(m)]
        listed = await s.client.list(Node, "")
    if names:
        known = {n.metadata.name for n in listed}
        for name in names:
            if name not in known:
                raise fail(f'nodes "{name}" not found')
        listed = [n for n in listed if n.metadata.name in names]
    if not samples:
        raise fail(NO_METRICS)
    _print(["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"], node_rows(listed, samples, sort_by))
    return 0


@app.command("pods")
@run_async
async def pods(
    names: Annotated[list[str] | None, typer.Argument(help="Pod names (all when none).")] = None,
    namespace: Namespace = None,
    all_namespaces: AllNamespaces = False,
    containers: Annotated[bool, typer.Option("--containers", help="One line per container.")] = False,
    sort_by: SortBy = "",
) -> int:
    """CPU and memory use of pods (the sum of their containers)."""
    _check_sort(sort_by)
    ns = subjects.ALL if all_namespaces else namespace_or_default(namespace)
    async with session() as s:
        samples = [m for m in await metrics.latest_nodes(s.nc.jetstream()) if metrics.is_fresh(m)]
    if not samples:
        raise fail(NO_METRICS)
    rows = pod_rows(samples, ns, names=names or (), containers=containers, sort_by=sort_by)
    if not rows:
        if names:
            raise fail(f"no metrics for pod {', '.join(names)} (not running, or not sampled yet)")
        where = "any namespace" if ns == subjects.ALL else f"{ns} namespace"
        stderr.print(f"No resources found in {where}.", markup=False)
        return 0
    header = (["NAMESPACE"] if ns == subjects.ALL else []) + (["POD"] if containers else [])
    header += ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    _print(header, rows)
    return 0


def _print(header: list[str], rows: list[Row]) -> None:
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for name in header:
        table.add_column(name, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    output.stdout.print(table)


# kubectl's singular and short forms.
app.command("node", hidden=True)(nodes)
app.command("no", hidden=True)(nodes)
app.command("pod", hidden=True)(pods)
app.command("po", hidden=True)(pods)
