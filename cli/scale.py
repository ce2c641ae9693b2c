"""`steer scale`: set `spec.replicas` of deployments and replica sets, as `kubectl scale`.

`--current-replicas N` is a precondition: the write carries the resourceVersion of the object
that was checked, so a change in between is a Conflict rather than a scale from the wrong count.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bus import kinds
from bus.errors import BadRequest, SteerError
from bus.resources import Deployment, ReplicaSet
from cli.errors import report, run_async
from cli.options import Namespace, namespace_or_default, split_target
from cli.session import Session, session

SCALABLE = (Deployment, ReplicaSet)


@run_async
async def scale(
    kind: Annotated[str, typer.Argument(help="deployment, replicaset (or deploy, rs), or KIND/NAME.")],
    replicas: Annotated[int, typer.Option("--replicas", help="The new number of replicas.")],
    names: Annotated[list[str] | None, typer.Argument(help="Names of objects.")] = None,
    current_replicas: Annotated[
        int | None,
        typer.Option("--current-replicas", help="Scale only if the object has this many replicas now."),
    ] = None,
    namespace: Namespace = None,
) -> int:
    """Set the number of replicas of deployments or replica sets."""
    if replicas < 0:
        raise BadRequest(f"--replicas must be 0 or more, not {replicas}")
    info, wanted = split_target(kind, names or [])
    if info.type not in SCALABLE:
        raise BadRequest(f"{info.plural} cannot be scaled: only deployments and replicasets have replicas")
    if not wanted:
        raise BadRequest(f"specify the {info.singular} to scale, e.g. {info.short_names[0]}/NAME")
    ns = namespace_or_default(namespace)
    failed = 0
    async with session() as s:
        for name in wanted:
            try:
                await _scale_one(s, info, name, ns, replicas=replicas, current=current_replicas)
            except SteerError as err:
                report(err)
                failed += 1
            else:
                print(f"{info.qualified}/{name} scaled", flush=True)
    return 1 if failed else 0


async def _scale_one(
    s: Session, info: kinds.KindInfo, name: str, ns: str, *, replicas: int, current: int | None
) -> None:
    patch: dict[str, Any] = {"spec": {"replicas": replicas}}
    if current is not None:
        obj = await s.client.get_kind(info, name, ns)
        assert isinstance(obj, SCALABLE)
        if obj.spec.replicas != current:
            raise BadRequest(f"Expected replicas to be {current}, was {obj.spec.replicas}")
        patch["metadata"] = {"resourceVersion": obj.metadata.resource_version}
    await s.client.patch_kind(info, name, patch, ns)
