"""`python -m services.api`: run one API server replica."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from bus import tlsclient
from bus.connection import Credentials
from bus.runner import run_service
from bus.store import StoreConfig
from bus.validation.networking import DEFAULT_NODE_PORT_RANGE
from services.api.iprange import DEFAULT_SERVICE_CIDR, ServiceRange
from services.api.portrange import NodePortRange
from services.api.server import ApiConfig, run


def parse_args(argv: list[str]) -> ApiConfig:
    parser = argparse.ArgumentParser(prog="steer api", description="Run an API server replica.")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS URL(s), comma-separated")
    parser.add_argument(
        "--creds", help="credentials file: an .nk file from `steer credentials`, or a NATS .creds file"
    )
    tlsclient.add_arguments(parser)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--token")
    parser.add_argument(
        "--replicas", type=int, default=1, help="replicas of each bucket and stream (3 in production)"
    )
    parser.add_argument("--history", type=int, default=1, help="revisions kept per key")
    parser.add_argument("--event-retention", type=float, default=3600.0, help="seconds events are kept")
    parser.add_argument(
        "--service-cidr",
        default=DEFAULT_SERVICE_CIDR,
        metavar="CIDR",
        help="the IPv4 range Services' ClusterIPs come from (/12 to /30)",
    )
    parser.add_argument(
        "--service-node-port-range",
        default=DEFAULT_NODE_PORT_RANGE,
        metavar="LOW-HIGH",
        help="the ports NodePort and LoadBalancer Services' nodePorts come from",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.replicas <= 5:
        parser.error("--replicas must be between 1 and 5")
    if not 1 <= args.history <= 64:
        parser.error("--history must be between 1 and 64")
    if args.event_retention <= 0:
        parser.error("--event-retention must be positive")
    try:
        service_range = ServiceRange.parse(args.service_cidr)
    except ValueError as err:
        parser.error(f"--service-cidr: {err}")
    try:
        node_port_range = NodePortRange.parse(args.service_node_port_range)
    except ValueError as err:
        parser.error(f"--service-node-port-range: {err}")
    store = StoreConfig(replicas=args.replicas, history=args.history)
    store.ttl["events"] = args.event_retention
    return ApiConfig(
        servers=args.nats,
        credentials=Credentials(
            args.creds, args.user, args.password, args.token, tls=tlsclient.from_args(args)
        ),
        store=store,
        event_retention=timedelta(seconds=args.event_retention),
        service_range=service_range,
        node_port_range=node_port_range,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(sys.argv[1:] if argv is None else argv)
    return run_service("steer api", run(config))


if __name__ == "__main__":
    sys.exit(main())
