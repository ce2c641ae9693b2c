"""`steer logs` and `steer exec`: talking to the node agent that runs a pod."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from bus.errors import BadRequest
from bus.resources import Pod
from bus.streams import ExecRequest, LogsRequest, read_logs, run_exec
from cli.durations import parse_duration
from cli.errors import fail, run_async
from cli.options import Namespace, Selector, namespace_or_default
from cli.session import Session, session

Container = Annotated[str, typer.Option("--container", "-c", help="Container (default: the first).")]


def _node_of(pod: Pod) -> str:
    if not pod.spec.node_name:
        raise BadRequest(f'pod "{pod.metadata.name}" is not scheduled to a node yet')
    return pod.spec.node_name


def _container_of(pod: Pod, container: str) -> str:
    names = [c.name for c in pod.spec.containers]
    if container and container not in names:
        raise BadRequest(
            f'container "{container}" is not in pod "{pod.metadata.name}" (has: {", ".join(names)})'
        )
    return container or names[0]


@run_async
async def logs(
    pod: Annotated[str | None, typer.Argument(help="Pod name (or pod/NAME).")] = None,
    container: Container = "",
    namespace: Namespace = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new output.")] = False,
    tail: Annotated[int | None, typer.Option(help="Only the last N lines.")] = None,
    since: Annotated[str | None, typer.Option(help="Only output newer than this, e.g. 5m.")] = None,
    previous: Annotated[
        bool, typer.Option("--previous", "-p", help="The previous (crashed) container.")
    ] = False,
    selector: Selector = "",
    prefix: Annotated[bool, typer.Option(help="Prefix each line with pod/NAME/CONTAINER.")] = False,
) -> int:
    """Print a container's output; with -l, follow every matching pod at once."""
    if (pod is None) == (not selector):
        raise fail("give a POD name or -l SELECTOR")
    if tail is not None and tail < 0:
        raise fail("--tail must be 0 or more")
    try:
        since_seconds = parse_duration(since).total_seconds() if since else None
    except ValueError as err:
        raise BadRequest(str(err)) from None
    ns = namespace_or_default(namespace)
    async with session() as s:
        if pod is not None:
            pods = [await s.client.get(Pod, pod.removeprefix("pod/").removeprefix("pods/"), ns)]
        else:
            pods = await s.client.list(Pod, ns, label_selector=selector)
            if not pods:
                raise BadRequest(f"no pods match {selector} in namespace {ns}")
        requests = [
            LogsRequest(
                namespace=ns,
                pod=p.metadata.name,
                container=_container_of(p, container),
                follow=follow,
                tail=tail,
                since_seconds=since_seconds,
                previous=previous,
            )
            for p in pods
        ]
        async with asyncio.TaskGroup() as tasks:
            for p, request in zip(pods, requests, strict=True):
                label = f"[pod/{p.metadata.name}/{request.container}] " if prefix or len(pods) > 1 else ""
                tasks.create_task(_print_logs(s, _node_of(p), request, label))
    return 0


async def _print_logs(s: Session, node: str, request: LogsRequest, label: str) -> None:
    pending = b""
    async for chunk in read_logs(s.nc, node, request):
        if not label:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            continue
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            sys.stdout.buffer.write(label.encode() + line + b"\n")
        sys.stdout.buffer.flush()
    if pending:
        sys.stdout.buffer.write(label.encode() + pending + b"\n")
        sys.stdout.buffer.flush()


@run_async
async def exec_(
    pod: Annotated[str, typer.Argument(help="Pod name.")],
    command: Annotated[list[str], typer.Argument(help="The command, after --.")],
    container: Container = "",
    namespace: Namespace = None,
    command_timeout: Annotated[float, typer.Option("--timeout", help="Seconds the command may run.")] = 60.0,
) -> int:
    """Run a command in a running container; exits with the command's exit code."""
    ns = namespace_or_default(namespace)
    async with session() as s:
        target = await s.client.get(Pod, pod.removeprefix("pod/"), ns)
        request = ExecRequest(
            namespace=ns,
            pod=target.metadata.name,
            container=_container_of(target, container),
            command=command,
            timeout_seconds=command_timeout,
        )
        reply = await run_exec(s.nc, _node_of(target), request)
    sys.stdout.buffer.write(reply.output)
    sys.stdout.buffer.flush()
    return reply.exit_code
