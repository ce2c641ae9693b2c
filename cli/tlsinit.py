"""`steer tls init`: the CA, certificates and nats-server config fragments of a TLS cluster."""

from __future__ import annotations

from typing import Annotated

import typer

from bus.errors import SteerError
from cli.errors import fail, report

app = typer.Typer(help="TLS files for NATS.", no_args_is_help=True)

DEFAULT_IDENTITIES = ["api", "scheduler", "controllers", "nodeagent", "cli"]


@app.command()
def init(
    directory: Annotated[str, typer.Option("--dir", help="Where to write the files.")] = "tls",
    identities: Annotated[
        list[str] | None,
        typer.Option("--identity", help="A client certificate for NAME (repeat; default: each component)."),
    ] = None,
    hosts: Annotated[
        list[str] | None,
        typer.Option("--host", help="A name or address the servers are reached at (repeat)."),
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Whether servers demand a client certificate.")
    ] = True,
    days: Annotated[int, typer.Option(help="Days the certificates are valid.")] = 365,
) -> None:
    """Make a CA (or keep the one in --dir), a server certificate, client certificates, and the
    `tls.conf` and `routes-tls.conf` fragments to include in each nats-server config."""
    from bus.tlsfiles import make_tls  # only here: cryptography is slow to import for every command

    if days <= 0:
        raise typer.BadParameter("must be positive", param_hint="--days")
    try:
        names = identities or DEFAULT_IDENTITIES
        files = make_tls(directory, names, hosts=hosts or [], verify=verify, days=days)
    except SteerError as err:
        report(err)
        raise typer.Exit(1) from None
    except OSError as err:
        raise fail(f"cannot write {err.filename or directory}: {err.strerror or err}") from None
    print(f"CA: {files.ca.cert} (key {files.ca.key})")
    print(f"server certificate: {files.server.cert} (key {files.server.key})")
    for identity, pair in files.clients.items():
        print(f"client certificate {identity}: {pair.cert} (key {pair.key})")
    # nats-server resolves an include relative to the file that includes it.
    print(f"include in each nats-server config:  {files.server_fragment}")
    print(f"include inside its cluster {{}} block: {files.routes_fragment}")
    print(f"clients: --tls-ca {files.ca.cert} --tls-cert FILE --tls-key FILE, and tls:// URLs")
