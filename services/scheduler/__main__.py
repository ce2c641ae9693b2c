"""`python -m services.scheduler`: run a scheduler."""

from __future__ import annotations

import argparse
import sys

from bus import tlsclient
from bus.connection import Credentials
from bus.leader import add_election_arguments, election_arguments
from bus.runner import run_service
from services.scheduler.server import SchedulerConfig, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="steer scheduler", description="Run a scheduler.")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS URL(s), comma-separated")
    parser.add_argument(
        "--creds", help="credentials file: an .nk file from `steer credentials`, or a NATS .creds file"
    )
    tlsclient.add_arguments(parser)
    add_election_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    duration, renew = election_arguments(parser, args)
    config = SchedulerConfig(
        servers=args.nats,
        credentials=Credentials(creds_file=args.creds, tls=tlsclient.from_args(args)),
        lease_duration=duration,
        renew_every=renew,
    )
    if args.instance:
        config.instance = args.instance
    return run_service("steer scheduler", run(config))


if __name__ == "__main__":
    sys.exit(main())
