"""`steer rollout status|history|undo|restart|pause|resume`: kubectl's rollout verbs for Deployments.

As in kubectl, undo is done here rather than by the controller: the chosen revision's pod template
is written back into the Deployment (compare-and-set on its resourceVersion, so a concurrent
change is never overwritten), and the controller rolls to it like to any new template.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer

from bus import workloads as revisions
from bus.codec import to_builtins, to_yaml
from bus.errors import BadRequest, NotFound
from bus.events import now
from bus.resources import Deployment, ReplicaSet
from bus.workloads import controller_of
from cli.durations import parse_duration
from cli.errors import fail, run_async
from cli.options import Namespace, namespace_or_default, split_target
from cli.session import Session, session

app = typer.Typer(
    help="Manage the rollout of a Deployment.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

Target = Annotated[str, typer.Argument(help="deployment/NAME (or the kind, then NAME).", metavar="KIND/NAME")]
Name = Annotated[str | None, typer.Argument(help="Name, when the kind is given alone.", show_default=False)]


def _deployment_name(target: str, name: str | None) -> str:
    info, names = split_target(target, [name] if name else [])
    if info.kind != "Deployment":
        raise BadRequest(f"rollout is supported for deployments only, not {info.plural}")
    if len(names) != 1:
        raise BadRequest("name exactly one deployment, e.g. deployment/web")
    return names[0]


def progress(d: Deployment) -> tuple[str, bool]:
    """kubectl's rollout status line for a Deployment, and whether the rollout is done.

    Raises when the rollout has exceeded its progress deadline."""
    name, status = d.metadata.name, d.status
    if d.metadata.generation > status.observed_generation:
        return "Waiting for deployment spec update to be observed...", False
    progressing = next((c for c in status.conditions if c.type == "Progressing"), None)
    if progressing is not None and progressing.reason == "ProgressDeadlineExceeded":
        raise BadRequest(f'deployment "{name}" exceeded its progress deadline')
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if status.updated_replicas < d.spec.replicas:
        return (
            f"{waiting}{status.updated_replicas} out of {d.spec.replicas} new replicas have been updated...",
            False,
        )
    if status.replicas > status.updated_replicas:
        return (
            f"{waiting}{status.replicas - status.updated_replicas} old replicas are pending termination...",
            False,
        )
    if status.available_replicas < status.updated_replicas:
        available = f"{status.available_replicas} of {status.updated_replicas}"
        return f"{waiting}{available} updated replicas are available...", False
    return f'deployment "{name}" successfully rolled out', True


@app.command()
@run_async
async def status(
    target: Target,
    name: Name = None,
    namespace: Namespace = None,
    limit: Annotated[
        str, typer.Option("--timeout", help="Give up after this long (e.g. 60s, 5m); 0 waits forever.")
    ] = "0",
    watch: Annotated[
        bool, typer.Option("--watch/--no-watch", "-w", help="Follow until the rollout ends.")
    ] = True,
) -> int:
    """Show a rollout's progress until it completes (exit 0) or fails (exit 1)."""
    deployment = _deployment_name(target, name)
    ns = namespace_or_default(namespace)
    try:
        seconds = parse_duration(limit).total_seconds()
    except ValueError as err:
        raise fail(f"--timeout: {err}") from None
    async with session() as s:
        current = await s.client.get(Deployment, deployment, ns)  # NotFound is reported as such
        line, done = progress(current)
        print(line, flush=True)
        if done or not watch:
            return 0
        try:
            async with asyncio.timeout(seconds or None):
                return await _follow(s, current, line)
        except TimeoutError:
            raise fail(f'timed out waiting for the rollout of deployment "{deployment}"') from None


async def _follow(s: Session, current: Deployment, last: str) -> int:
    name, ns = current.metadata.name, current.metadata.namespace
    async with contextlib.aclosing(s.store.watch(Deployment, ns)) as events:
        async for event in events:
            d = event.object
            if d is None or d.metadata.name != name:
                continue
            if event.type == "DELETED":
                raise NotFound(f'deployments.apps "{name}" was deleted during the rollout')
            line, done = progress(d)
            if line != last:
                print(line, flush=True)
                last = line
            if done:
                return 0
    raise fail("the watch ended")


async def _history(s: Session, d: Deployment) -> dict[int, ReplicaSet]:
    """The Deployment's ReplicaSets by revision."""
    owned = [
        rs
        for rs in await s.client.list(ReplicaSet, d.metadata.namespace)
        if (ref := controller_of(rs)) is not None and ref.uid == d.metadata.uid
    ]
    return {revisions.revision(rs): rs for rs in owned if revisions.revision(rs)}


@app.command()
@run_async
async def history(
    target: Target,
    name: Name = None,
    namespace: Namespace = None,
    revision: Annotated[int, typer.Option(help="Show the pod template of this revision.")] = 0,
) -> int:
    """List a Deployment's revisions, or show one in detail."""
    deployment = _deployment_name(target, name)
    async with session() as s:
        d = await s.client.get(Deployment, deployment, namespace_or_default(namespace))
        found = await _history(s, d)
    if revision:
        if revision not in found:
            raise fail(f"unable to find the specified revision {revision}")
        print(f"deployment.apps/{deployment} with revision #{revision}")
        print(to_yaml(to_builtins(revisions.without_hash(found[revision].spec.template))), end="")
        return 0
    print(f"deployment.apps/{deployment}")
    print(f"{'REVISION':<10}CHANGE-CAUSE")
    for number in sorted(found):
        print(f"{number:<10}{found[number].metadata.annotations.get(revisions.CHANGE_CAUSE, '<none>')}")
    return 0


@app.command()
@run_async
async def undo(
    target: Target,
    name: Name = None,
    namespace: Namespace = None,
    to_revision: Annotated[int, typer.Option(help="Revision to go back to (default: the previous one).")] = 0,
) -> int:
    """Roll a Deployment back to an earlier revision."""
    deployment = _deployment_name(target, name)
    if to_revision < 0:
        raise fail("--to-revision must be a revision number (0 or more)")
    async with session() as s:
        d = await s.client.get(Deployment, deployment, namespace_or_default(namespace))
        if d.spec.paused:
            raise fail(
                f"you cannot roll back a paused deployment; resume it first with "
                f"'steer rollout resume deployment/{deployment}' and try again"
            )
        found = await _history(s, d)
        if to_revision == 0:
            earlier = sorted(found)[:-1]
            if not earlier:
                raise fail(f'no rollout history found for deployment "{deployment}"')
            to_revision = earlier[-1]
        if to_revision not in found:
            raise fail(f"unable to find specified revision {to_revision} in history")
        template = revisions.without_hash(found[to_revision].spec.template)
        if template == d.spec.template:
            print(
                f"deployment.apps/{deployment} skipped rollback "
                f"(current template already matches revision {to_revision})"
            )
            return 0
        d.spec.template = template
        await s.client.update(d)  # carries d's resourceVersion: refused if it changed meanwhile
    print(f"deployment.apps/{deployment} rolled back")
    return 0


@app.command()
@run_async
async def restart(target: Target, name: Name = None, namespace: Namespace = None) -> int:
    """Replace every pod of a Deployment, by rolling out a fresh template annotation."""
    deployment = _deployment_name(target, name)
    async with session() as s:
        d = await s.client.get(Deployment, deployment, namespace_or_default(namespace))
        if d.spec.paused:
            raise fail(
                f"can't restart paused deployment (run 'steer rollout resume deployment/{deployment}' first)"
            )
        stamp = now().isoformat(timespec="seconds").replace("+00:00", "Z")
        patch = {"spec": {"template": {"metadata": {"annotations": {revisions.RESTARTED_AT: stamp}}}}}
        await s.client.patch(Deployment, deployment, patch, d.metadata.namespace)
    print(f"deployment.apps/{deployment} restarted")
    return 0


async def _set_paused(target: str, name: str | None, namespace: str | None, paused: bool) -> int:
    deployment = _deployment_name(target, name)
    verb = "paused" if paused else "resumed"
    async with session() as s:
        d = await s.client.get(Deployment, deployment, namespace_or_default(namespace))
        if d.spec.paused == paused:
            raise fail(f'deployments.apps "{deployment}" is {"already" if paused else "not"} paused')
        await s.client.patch(
            Deployment, deployment, {"spec": {"paused": paused or None}}, d.metadata.namespace
        )
    print(f"deployment.apps/{deployment} {verb}")
    return 0


@app.command()
@run_async
async def pause(target: Target, name: Name = None, namespace: Namespace = None) -> int:
    """Stop rolling out template changes (scaling still happens)."""
    return await _set_paused(target, name, namespace, True)


@app.command()
@run_async
async def resume(target: Target, name: Name = None, namespace: Namespace = None) -> int:
    """Roll out template changes again."""
    return await _set_paused(target, name, namespace, False)
