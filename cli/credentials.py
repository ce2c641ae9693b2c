"""`steer credentials`: make and manage the credentials that confine each part of a cluster.

`init` makes one identity per component (api, scheduler, controllers), an admin, and one per
node; `add-user`, `add-node` and `revoke` change the registry. Each rewrites the authorization
file (cli/registry.py), which nats-server applies when it reloads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bus.errors import BadRequest, SteerError
from bus.permissions import USER_ROLES, Role
from bus.validation.rules import dns1123_label
from cli import registry
from cli.errors import report
from cli.output import stdout

DEFAULT_DIR = Path(".steer") / "credentials"

app = typer.Typer(help="Make and manage credentials (nkeys) and the NATS authorization file.")

Directory = Annotated[Path, typer.Option("--dir", help="The credentials directory.")]


def _tls_directory(directory: Path) -> Path:
    return directory / "tls"


def _issue_certificates(reg: registry.Registry, directory: Path, hosts: list[str]) -> list[str]:
    """A client certificate for every identity (and the CA and server certificate, once), when
    the cluster uses TLS: `init --tls` made its CA, and add-user/add-node/revoke keep it in step."""
    from bus.tlsfiles import make_tls  # only here: cryptography is slow to import for every command

    files = make_tls(_tls_directory(directory), sorted(reg.identities), hosts=hosts)
    return [
        f"TLS: CA {files.ca.cert}, server certificate {files.server.cert}, a client certificate per "
        f"identity in {files.directory}; include {files.server_fragment} in each server's config "
        f"and {files.routes_fragment} in its cluster {{}} block"
    ]


def _done(reg: registry.Registry, changed: bool, lines: list[str]) -> None:
    for line in lines:
        stdout.print(line, markup=False, highlight=False)
    if changed:
        stdout.print(
            f"wrote {reg.authorization_file}; a running nats-server applies it on reload "
            "(`steer up` reloads its own; otherwise `nats-server --signal reload=PID` or SIGHUP)",
            markup=False,
            highlight=False,
        )


@app.command()
def init(
    directory: Directory = DEFAULT_DIR,
    nodes: Annotated[int, typer.Option(help="Node credentials to make: PREFIX-1 ... PREFIX-N.")] = 0,
    node_prefix: Annotated[str, typer.Option(help="Node names are PREFIX-1, PREFIX-2, ...")] = "node",
    tls: Annotated[bool, typer.Option("--tls", help="Also make a CA and certificates.")] = False,
    hosts: Annotated[
        list[str] | None,
        typer.Option("--host", help="With --tls: a name or address the servers are reached at (repeat)."),
    ] = None,
) -> None:
    """Make the credentials of a cluster: api, scheduler, controllers, admin, and nodes."""
    try:
        if not 0 <= nodes <= 1000:
            raise BadRequest("--nodes must be between 0 and 1000")
        names = [f"{node_prefix}-{i + 1}" for i in range(nodes)]
        if names and (problems := dns1123_label(names[-1])):
            raise BadRequest(f'--node-prefix "{node_prefix}" makes invalid node names: {"; ".join(problems)}')
        reg, changed = registry.ensure_cluster(directory, names)
        lines = [f"{i.name} ({i.role}): {reg.credential_file(i.name)}" for i in reg.identities.values()]
        if tls:
            lines += _issue_certificates(reg, directory, hosts or [])
    except SteerError as err:
        report(err)
        raise typer.Exit(1) from None
    _done(reg, changed, lines)


@app.command("add-user")
def add_user(
    name: Annotated[str, typer.Argument(help="The user's name (a DNS-1123 label).")],
    role: Annotated[str, typer.Option(help="view, edit or admin.")] = "view",
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Confine the user to this namespace (repeatable)."),
    ] = None,
    directory: Directory = DEFAULT_DIR,
) -> None:
    """Add a user who may view, edit or administer (in some namespaces only, with -n)."""
    try:
        if role not in USER_ROLES:
            raise BadRequest(f'unknown role "{role}": use view, edit or admin')
        if role == "admin" and namespace:
            raise BadRequest("an admin is not confined to namespaces: use --role edit")
        user_role: Role = role
        _add(directory, name, user_role, tuple(namespace or ()))
    except SteerError as err:
        report(err)
        raise typer.Exit(1) from None


@app.command("add-node")
def add_node(
    name: Annotated[str, typer.Argument(help="The node's name, as its agent's --name.")],
    directory: Directory = DEFAULT_DIR,
) -> None:
    """Add a node: its agent may use only the subjects that carry its name."""
    try:
        _add(directory, name, "node", ())
    except SteerError as err:
        report(err)
        raise typer.Exit(1) from None


@app.command()
def revoke(
    name: Annotated[str, typer.Argument(help="The identity to revoke.")],
    directory: Directory = DEFAULT_DIR,
) -> None:
    """Revoke an identity: its key leaves the authorization file and its credential file goes."""
    try:
        reg = registry.load(directory)
        reg.revoke(name)
        changed = reg.save()
        lines = [f'revoked "{name}"']
        if (certificate := _tls_directory(directory) / f"{name}.pem").exists():
            # A certificate from the cluster's CA would still let its holder connect over TLS;
            # the revoked nkey is what keeps it out, and the files go with it.
            certificate.unlink()
            (_tls_directory(directory) / f"{name}-key.pem").unlink(missing_ok=True)
            lines.append(f"removed its certificate {certificate}")
    except SteerError as err:
        report(err)
        raise typer.Exit(1) from None
    _done(reg, changed, lines)


def _add(directory: Path, name: str, role: Role, namespaces: tuple[str, ...]) -> None:
    reg = registry.load(directory)
    if not reg.identities:
        raise BadRequest(
            f"no credentials registry in {directory}: run `steer credentials init --dir {directory}`"
        )
    identity, made = reg.add(name, role, namespaces)
    changed = reg.save()
    path = reg.credential_file(name)
    what = f"{identity.role}" + (f" in {', '.join(namespaces)}" if namespaces else "")
    lines = [f"{name} ({what}): {path}" if made else f"{name} exists: {path}"]
    if made and (_tls_directory(directory) / "ca.pem").exists():
        from bus.tlsfiles import add_client  # only here: cryptography is slow to import

        pair = add_client(_tls_directory(directory), name)
        lines.append(f"{name}: TLS client certificate {pair.cert} (key {pair.key})")
    _done(reg, changed, lines)
