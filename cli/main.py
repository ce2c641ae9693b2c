"""The `steer` command: kubectl's verbs for a steersman cluster."""

from __future__ import annotations

import dataclasses
import sys
from typing import Annotated

import typer

from bus.tlsclient import TlsOptions
from cli import (
    apply,
    backup,
    cluster,
    credentials,
    down,
    eventlog,
    nodes,
    podio,
    resources,
    rollout,
    scale,
    tlsinit,
    top,
    up,
    wait,
)
from cli.errors import unexpected
from cli.session import settings

app = typer.Typer(
    name="steer",
    help="steersman: a small container orchestrator on NATS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def options(
    nats: Annotated[
        str | None, typer.Option("--nats", envvar="STEER_NATS", help="NATS URL(s), comma-separated.")
    ] = None,
    creds: Annotated[
        str | None,
        typer.Option(
            "--creds",
            envvar="STEER_CREDS",
            help="Credentials file (default: .steer/credentials/admin.nk here, else ~/.config/steer/creds).",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each API request.")] = 10.0,
    tls_ca: Annotated[
        str | None, typer.Option("--tls-ca", envvar="STEER_TLS_CA", help="CA verifying NATS servers.")
    ] = None,
    tls_cert: Annotated[
        str | None, typer.Option("--tls-cert", envvar="STEER_TLS_CERT", help="Client certificate for NATS.")
    ] = None,
    tls_key: Annotated[
        str | None, typer.Option("--tls-key", envvar="STEER_TLS_KEY", help="Key of the client certificate.")
    ] = None,
) -> None:
    if nats:
        settings.servers = nats
    if creds:
        settings.credentials = dataclasses.replace(settings.credentials, creds_file=creds)
    if tls_ca or tls_cert or tls_key:
        tls = TlsOptions(tls_ca, tls_cert, tls_key)
        settings.credentials = dataclasses.replace(settings.credentials, tls=tls)
    if timeout <= 0:
        raise typer.BadParameter("must be positive", param_hint="--timeout")
    settings.timeout = timeout


app.command()(resources.get)
app.command()(resources.describe)
app.command()(apply.apply)
app.command()(apply.create)
app.command()(apply.delete)
app.command()(eventlog.events)
app.command()(podio.logs)
app.command(name="exec")(podio.exec_)
app.command()(nodes.cordon)
app.command()(nodes.uncordon)
app.command()(nodes.drain)
app.command()(scale.scale)
app.command()(wait.wait)
app.command()(up.up)
app.command()(down.down)
app.command()(cluster.status)
app.command()(backup.backup)
app.command()(backup.restore)
app.add_typer(rollout.app, name="rollout")
app.add_typer(top.app, name="top")
app.add_typer(credentials.app, name="credentials")
app.add_typer(tlsinit.app, name="tls")

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@app.command(context_settings=_PASS_THROUGH, add_help_option=False)
def api(ctx: typer.Context) -> None:
    """Run an API server replica (options: steer api --help)."""
    cluster.exec_service("services.api", ctx.args)


@app.command(context_settings=_PASS_THROUGH, add_help_option=False)
def controllers(ctx: typer.Context) -> None:
    """Run the built-in controllers (options: steer controllers --help)."""
    cluster.exec_service("services.controllers", ctx.args)


@app.command(context_settings=_PASS_THROUGH, add_help_option=False)
def scheduler(ctx: typer.Context) -> None:
    """Run a scheduler (options: steer scheduler --help)."""
    cluster.exec_service("services.scheduler", ctx.args)


@app.command(context_settings=_PASS_THROUGH, add_help_option=False)
def nodeagent(ctx: typer.Context) -> None:
    """Run a node agent (options: steer nodeagent --help)."""
    cluster.exec_service("nodeagent", ctx.args)


def main() -> None:
    try:
        app()  # usage errors and exit codes are handled by typer itself (SystemExit passes through)
    except Exception as err:  # a bug: still no traceback for the user
        sys.exit(unexpected(err))


if __name__ == "__main__":
    main()
