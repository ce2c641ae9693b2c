"""`steer backup FILE` and `steer restore FILE`: every object of a cluster, to a file and back.

What an etcd snapshot is to a Kubernetes cluster, taken through the API (so NATS permissions
apply, and any API replica serves it): each kind is listed across all namespaces page by page
and written out as served, resourceVersion and uid included (docs/operations.md, Backup and
restore; cli/backupfile.py, the format). Events and Leases are left out: events are a time
window of history with a TTL, and leases are liveness (node heartbeats, leader election) that
must not outlive the processes that held them. IPAddresses and NodePorts are left out too: they
are the API's record of the Services' ClusterIPs and nodePorts, made again when the Services
are restored with their addresses and ports (restored first, they would make each look taken
by another).

A restore recreates the objects through the API, owners before dependents (cli/restoreplan.py),
and then their status. An object that exists already is reported and left as it is, as `kubectl
create` and Velero do; `--overwrite` replaces it with the backup's version instead.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import typer

from bus import kinds
from bus.client import Client
from bus.errors import AlreadyExists, NotFound, SteerError
from bus.meta import Resource
from bus.subjects import ALL
from cli import backupfile, restoreplan
from cli.errors import report, run_async
from cli.session import session

SKIPPED_KINDS = ("Event", "Lease", "IPAddress", "NodePort")
PAGE_SIZE = 500


@run_async
async def backup(
    file: Annotated[str, typer.Argument(help="The file to write (JSON lines).")],
    page_size: Annotated[int, typer.Option(help="Objects asked for in each list request.")] = PAGE_SIZE,
) -> int:
    """Write every object of every kind (but events, leases, IP addresses and node ports) to FILE."""
    backed_up = [info for info in kinds.KINDS if info.kind not in SKIPPED_KINDS]
    counts: Counter[str] = Counter()
    versions: dict[str, str] = {}
    async with session() as s:
        writer = backupfile.Writer(file, skipped_kinds=list(SKIPPED_KINDS))
        try:
            for info in backed_up:
                async for page, version in s.client.list_pages(info, ALL, page_size=page_size):
                    versions.setdefault(info.plural, version)
                    for obj in page:
                        writer.add(obj)
                    counts[info.plural] += len(page)
            writer.close(versions)
        except BaseException:
            writer.abort()
            raise
    summary = ", ".join(f"{counts[info.plural]} {info.plural}" for info in backed_up)
    print(f"backed up {writer.count} objects to {file} ({summary})", flush=True)
    return 0


@run_async
async def restore(
    file: Annotated[str, typer.Argument(help="A file written by `steer backup`.")],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace objects that exist already with the backup's.")
    ] = False,
) -> int:
    """Recreate the objects of a backup FILE (those that exist already are left as they are)."""
    content = backupfile.read(file)  # the whole file is checked before anything is written
    outcome: Counter[str] = Counter()
    async with session() as s:
        leaving = _namespaces_being_deleted(content.objects)
        backed_up = {o.metadata.name for o in content.objects if o.kind == "Namespace"}
        restorer = _Restorer(s.client, overwrite=overwrite, leaving=leaving, backed_up=backed_up)
        for obj in restoreplan.order(content.objects):
            outcome[await restorer.restore(obj)] += 1
    print(
        f"restored {file}: {outcome['created']} created, {outcome['replaced']} replaced, "
        f"{outcome['exists']} already existed, {outcome['skipped']} skipped, {outcome['failed']} failed",
        flush=True,
    )
    return 1 if outcome["failed"] else 0


class _Restorer:
    def __init__(self, client: Client, *, overwrite: bool, leaving: set[str], backed_up: set[str]) -> None:
        self.client = client
        self.overwrite = overwrite
        self.leaving = leaving
        self.backed_up = backed_up  # the namespaces the backup holds
        self.new_uids: dict[str, str] = {}  # backed-up uid -> uid of the object restored in its place

    async def restore(self, obj: Resource) -> str:
        """Recreate one object (and its status); one line saying what became of it, and which."""
        info = kinds.of(obj)
        target = f"{info.qualified}/{obj.metadata.name}"
        if info.namespaced:
            target += f" -n {obj.metadata.namespace}"
        if obj.metadata.deletion_timestamp is not None:
            print(f"{target} skipped (it was being deleted)", flush=True)
            return "skipped"
        if info.namespaced and obj.metadata.namespace in self.leaving:
            print(f"{target} skipped (its namespace was being deleted)", flush=True)
            return "skipped"
        try:
            outcome, stored = await self._write(info, obj)
        except SteerError as err:
            if isinstance(err, NotFound) and info.namespaced and obj.metadata.namespace not in self.backed_up:
                # The backup is not one snapshot: the namespace went between the listing of the
                # namespaces and of this kind, and what was in it was going with it.
                print(f"{target} skipped (its namespace is in neither the backup nor here)", flush=True)
                return "skipped"
            report(err, subject=target)
            return "failed"
        print(f"{target} {_SAID[outcome]}", flush=True)
        if stored is None:
            return outcome
        status = restoreplan.status_to_restore(obj, stored)
        try:
            if status is not None:
                await self.client.update_status(status)
        except SteerError as err:
            report(err, subject=f"{target}: its status was not restored")
            return "failed"
        return outcome

    async def _write(self, info: kinds.KindInfo, obj: Resource) -> tuple[str, Resource | None]:
        namespace = obj.metadata.namespace
        wanted = restoreplan.for_create(obj, self.new_uids)
        try:
            stored = await self.client.create_raw(info, namespace, wanted)
            outcome = "created"
        except AlreadyExists:
            stored = await self.client.get_kind(info, obj.metadata.name, namespace)
            # Dependents in the backup belong to the object that stands in its place now.
            self.new_uids[obj.metadata.uid] = stored.metadata.uid
            if not self.overwrite:
                return "exists", None
            wanted.metadata.resource_version = stored.metadata.resource_version
            stored = await self.client.update_raw(info, namespace, wanted)
            outcome = "replaced"
        self.new_uids[obj.metadata.uid] = stored.metadata.uid
        return outcome, stored


def _namespaces_being_deleted(objects: list[Resource]) -> set[str]:
    return {o.metadata.name for o in objects if o.kind == "Namespace" and o.metadata.deletion_timestamp}


_SAID = {"created": "created", "replaced": "replaced", "exists": "already exists (left unchanged)"}
