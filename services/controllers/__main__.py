"""`python -m services.controllers`: run the built-in controllers (one process leads)."""

from __future__ import annotations

import argparse
import sys

from bus.connection import Credentials
from bus.runner import run_service
from services.controllers.server import ControllersConfig, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="steer controllers", description="Run the built-in controllers.")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS URL(s), comma-separated")
    parser.add_argument("--creds", help="NATS credentials file")
    parser.add_argument("--lease", default="15,5", help="leader lease duration,renew interval in seconds")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        duration, renew = (float(x) for x in args.lease.split(","))
    except ValueError:
        parser.error("--lease takes two numbers: duration,renew")
    if not 0 < renew < duration:
        parser.error("--lease: the renew interval must be positive and shorter than the duration")
    config = ControllersConfig(
        servers=args.nats,
        credentials=Credentials(creds_file=args.creds),
        lease_duration=duration,
        renew_every=renew,
    )
    return run_service("steer controllers", run(config))


if __name__ == "__main__":
    sys.exit(main())
