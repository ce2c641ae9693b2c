"""`steer apply`, `steer create` and `steer delete`: manifests in, one line per object out.

Every object is tried even when an earlier one fails, as kubectl does; the exit code is non-zero
if any failed.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bus import kinds, subjects
from bus.errors import BadRequest, NotFound, SteerError
from bus.meta import ObjectMeta
from bus.resources import Namespace as NamespaceKind
from cli import manifests
from cli.errors import fail, report, run_async
from cli.options import Files, Namespace, Recursive, Selector, namespace_or_default, split_target
from cli.output import name_of
from cli.session import Session, session


def _target(manifest: manifests.Manifest, namespace: str | None) -> tuple[kinds.KindInfo, str, str]:
    body = manifest.body
    kind = body.get("kind")
    if not isinstance(kind, str) or not kind:
        raise BadRequest(f"{manifest.source}: an object has no kind")
    info = kinds.by_kind(kind)
    raw_metadata = body.get("metadata")
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    name = metadata.get("name")
    name = name if isinstance(name, str) else ""
    given = metadata.get("namespace")
    if info.namespaced and given and namespace and given != namespace:
        raise BadRequest(
            f'the namespace from the provided object "{given}" does not match the namespace "{namespace}"'
        )
    ns = (given if isinstance(given, str) and given else None) or namespace_or_default(namespace)
    return info, ns if info.namespaced else "", name


def _label(info: kinds.KindInfo, name: str) -> str:
    return f"{info.qualified}/{name}"


async def _each(paths: list[str], recursive: bool, namespace: str | None, action: Any) -> int:
    failed = 0
    for manifest in manifests.read(paths, recursive=recursive):
        try:
            info, ns, name = _target(manifest, namespace)
            print(await action(info, ns, name, manifest.body), flush=True)
        except SteerError as err:
            report(err)
            failed += 1
    return 1 if failed else 0


@run_async
async def apply(filename: Files = None, namespace: Namespace = None, recursive: Recursive = False) -> int:
    """Create or update objects from manifests (YAML or JSON, one or many documents)."""
    if not filename:
        raise fail("must specify -f FILE (a file, a directory, or - for stdin)")
    async with session() as s:

        async def one(info: kinds.KindInfo, ns: str, name: str, body: dict[str, Any]) -> str:
            return await _apply_one(s, info, ns, name, body)

        return await _each(filename, recursive, namespace, one)


async def apply_manifest(s: Session, manifest: manifests.Manifest, namespace: str | None) -> str:
    """Apply one object; the line to print (`deployment.apps/web configured`)."""
    info, ns, name = _target(manifest, namespace)
    return await _apply_one(s, info, ns, name, manifest.body)


async def _apply_one(s: Session, info: kinds.KindInfo, ns: str, name: str, body: dict[str, Any]) -> str:
    if not name:
        raise BadRequest(f"a {info.kind} to apply needs metadata.name")
    try:
        current = await s.client.get_kind(info, name, ns)
    except NotFound:
        await s.client.create_raw(info, ns, manifests.with_last_applied(body))
        return f"{_label(info, name)} created"
    patch = manifests.apply_patch(body, current.metadata.annotations.get(manifests.LAST_APPLIED))
    patched = await s.client.patch_kind(info, name, patch, ns)
    changed = patched.metadata.resource_version != current.metadata.resource_version
    return f"{_label(info, name)} {'configured' if changed else 'unchanged'}"


@run_async
async def create(
    kind: Annotated[str | None, typer.Argument(help="`namespace` to create one by name.")] = None,
    name: Annotated[str | None, typer.Argument()] = None,
    filename: Files = None,
    namespace: Namespace = None,
    recursive: Recursive = False,
) -> int:
    """Create objects from manifests (an existing one is an error), or a namespace by name."""
    async with session() as s:
        if kind is not None:
            if kinds.resolve(kind).kind != "Namespace" or not name:
                raise fail("use `steer create namespace NAME`, or -f FILE for other kinds")
            created = await s.client.create(NamespaceKind(metadata=ObjectMeta(name=name)))
            print(f"{name_of(created)} created")
            return 0
        if not filename:
            raise fail("must specify -f FILE (a file, a directory, or - for stdin)")

        async def one(info: kinds.KindInfo, ns: str, name: str, body: dict[str, Any]) -> str:
            created = await s.client.create_raw(info, ns, body)
            return f"{name_of(created)} created"

        return await _each(filename, recursive, namespace, one)


@run_async
async def delete(
    kind: Annotated[str | None, typer.Argument(help="Kind, or KIND/NAME.")] = None,
    names: Annotated[list[str] | None, typer.Argument(help="Names of objects.")] = None,
    filename: Files = None,
    namespace: Namespace = None,
    recursive: Recursive = False,
    selector: Selector = "",
    everything: Annotated[bool, typer.Option("--all", help="Delete every object of the kind.")] = False,
    grace_period: Annotated[
        int | None, typer.Option("--grace-period", help="Seconds a pod gets to stop (0: at once).")
    ] = None,
    cascade: Annotated[
        str,
        typer.Option(
            help="What becomes of the dependents (ownerReferences): background (deleted after the "
            "owner), foreground (deleted first; the owner waits for them) or orphan (kept)."
        ),
    ] = "background",
    ignore_not_found: Annotated[bool, typer.Option("--ignore-not-found")] = False,
    wait: Annotated[
        bool, typer.Option(help="Wait until the object is really gone (pods stop gracefully first).")
    ] = True,
) -> int:
    """Delete objects by name, by selector, or as listed in manifests."""
    policy = cascade.capitalize()
    if policy not in ("Background", "Foreground", "Orphan"):
        raise fail(f'invalid --cascade "{cascade}": use background, foreground or orphan')
    if grace_period is not None and grace_period < 0:
        raise fail("--grace-period must be 0 or more")
    options: dict[str, Any] = {"grace_period_seconds": grace_period, "propagation_policy": policy}
    async with session() as s:

        async def one(info: kinds.KindInfo, ns: str, name: str, body: object = None) -> str:
            try:
                last = await s.client.delete_kind(info, name, ns, **options)
            except NotFound:
                if not ignore_not_found:
                    raise
                return ""
            if wait and last.metadata.deletion_timestamp is not None:
                await _until_gone(s, info, ns, name)
            return f'{info.qualified} "{name}" deleted'

        if filename:
            return await _each(filename, recursive, namespace, one)
        if kind is None:
            raise fail("specify KIND NAME..., KIND -l SELECTOR, KIND --all, or -f FILE")
        info, wanted = split_target(kind, names or [])
        ns = namespace_or_default(namespace) if info.namespaced else ""
        if not wanted:
            if not selector and not everything:
                raise fail(f"specify names of {info.plural} to delete, or -l SELECTOR, or --all")
            items, _ = await s.client.list_kind(info, ns, label_selector=selector)
            wanted = [item.metadata.name for item in items]
        failed = 0
        for name in wanted:
            try:
                if line := await one(info, ns, name):
                    print(line, flush=True)
            except SteerError as err:
                report(err)
                failed += 1
        return 1 if failed else 0


async def _until_gone(s: Session, info: kinds.KindInfo, ns: str, name: str) -> None:
    """Follow the object until the store no longer has it (its finalizers and grace period done)."""
    async for event in s.store.watch(info.type, ns if info.namespaced else subjects.ALL):
        if event.type == "SYNCED":
            try:
                await s.client.get_kind(info, name, ns)
            except NotFound:
                return  # gone before the watch began
        elif event.type == "DELETED" and event.object is not None and event.object.metadata.name == name:
            return
