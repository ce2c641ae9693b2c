"""`python -m services.controllers`: run the built-in controllers (one process leads)."""

from __future__ import annotations

import argparse
import sys
from ipaddress import IPv4Network

from bus import tlsclient
from bus.connection import Credentials
from bus.leader import add_election_arguments, election_arguments
from bus.runner import run_service
from services.controllers.autoscaler import DEFAULT_SYNC_PERIOD
from services.controllers.cidrs import NodeCIDRs
from services.controllers.disruption import EvictionLimits
from services.controllers.nodeipam import DEFAULT_CLUSTER_CIDR, DEFAULT_NODE_MASK
from services.controllers.nodelifecycle import DEFAULT_GRACE, DEFAULT_SETTLE, DEFAULT_TOLERATION_SECONDS
from services.controllers.server import ControllersConfig, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="steer controllers", description="Run the built-in controllers.")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS URL(s), comma-separated")
    parser.add_argument(
        "--creds", help="credentials file: an .nk file from `steer credentials`, or a NATS .creds file"
    )
    tlsclient.add_arguments(parser)
    add_election_arguments(parser)
    parser.add_argument(
        "--node-grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help="seconds without a node heartbeat before the node is Unknown and tainted unreachable",
    )
    parser.add_argument(
        "--default-toleration-seconds",
        type=int,
        default=DEFAULT_TOLERATION_SECONDS,
        metavar="N",
        help="how long pods without their own toleration stay on a not-ready or unreachable node",
    )
    parser.add_argument(
        "--node-eviction-settle",
        type=float,
        default=DEFAULT_SETTLE,
        metavar="SECONDS",
        help="how long a node stays unhealthy before its pods may be evicted (at least the agents' "
        "lease renewal interval, so that nodes silent together are seen together)",
    )
    limits = EvictionLimits()
    parser.add_argument(
        "--node-eviction-rate",
        type=float,
        default=limits.node_eviction_rate,
        metavar="PER_SECOND",
        help="nodes per second whose pods may begin to be evicted, per zone",
    )
    parser.add_argument(
        "--secondary-node-eviction-rate",
        type=float,
        default=limits.secondary_node_eviction_rate,
        metavar="PER_SECOND",
        help="the same in a partially disrupted zone larger than --large-cluster-size-threshold",
    )
    parser.add_argument(
        "--large-cluster-size-threshold",
        type=int,
        default=limits.large_cluster_size_threshold,
        metavar="N",
        help="a partially disrupted zone of at most N nodes evicts nothing",
    )
    parser.add_argument(
        "--unhealthy-zone-threshold",
        type=float,
        default=limits.unhealthy_zone_threshold,
        metavar="FRACTION",
        help="share of a zone's nodes not ready (and more than 2) that makes it partially disrupted",
    )
    parser.add_argument(
        "--hpa-sync-period",
        type=float,
        default=DEFAULT_SYNC_PERIOD,
        metavar="SECONDS",
        help="how often each HorizontalPodAutoscaler is evaluated",
    )
    parser.add_argument(
        "--allocate-node-cidrs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give every Node a pod CIDR (spec.podCIDR) carved from --cluster-cidr",
    )
    parser.add_argument(
        "--cluster-cidr",
        default=DEFAULT_CLUSTER_CIDR,
        metavar="CIDR",
        help="the IPv4 range pod addresses come from, cut into one subnet per node",
    )
    parser.add_argument(
        "--node-cidr-mask-size",
        type=int,
        default=DEFAULT_NODE_MASK,
        metavar="BITS",
        help="prefix length of each node's pod CIDR",
    )
    parser.add_argument(
        "--servicelb",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="publish the Ready nodes' addresses as the ingress of every Service of type LoadBalancer "
        "(k3s's ServiceLB); --no-servicelb where another load balancer controller does",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    duration, renew = election_arguments(parser, args)
    if args.node_grace <= 0:
        parser.error("--node-grace must be positive")
    if args.default_toleration_seconds < 0:
        parser.error("--default-toleration-seconds must not be negative")
    if args.hpa_sync_period <= 0:
        parser.error("--hpa-sync-period must be positive")
    if args.node_eviction_settle < 0 or args.node_eviction_rate < 0 or args.secondary_node_eviction_rate < 0:
        parser.error("--node-eviction-settle and the eviction rates must not be negative")
    if args.large_cluster_size_threshold < 0:
        parser.error("--large-cluster-size-threshold must not be negative")
    if not 0 < args.unhealthy_zone_threshold <= 1:
        parser.error("--unhealthy-zone-threshold is a fraction: more than 0, at most 1")
    try:
        node_cidrs = NodeCIDRs(IPv4Network(args.cluster_cidr, strict=True), args.node_cidr_mask_size)
    except ValueError as err:
        parser.error(f"--cluster-cidr/--node-cidr-mask-size: {err}")
    config = ControllersConfig(
        servers=args.nats,
        credentials=Credentials(creds_file=args.creds, tls=tlsclient.from_args(args)),
        lease_duration=duration,
        renew_every=renew,
        node_grace=args.node_grace,
        default_toleration_seconds=args.default_toleration_seconds,
        node_eviction_settle=args.node_eviction_settle,
        eviction_limits=EvictionLimits(
            node_eviction_rate=args.node_eviction_rate,
            secondary_node_eviction_rate=args.secondary_node_eviction_rate,
            large_cluster_size_threshold=args.large_cluster_size_threshold,
            unhealthy_zone_threshold=args.unhealthy_zone_threshold,
        ),
        hpa_sync_period=args.hpa_sync_period,
        allocate_node_cidrs=args.allocate_node_cidrs,
        node_cidrs=node_cidrs,
        service_lb=args.servicelb,
    )
    if args.instance:
        config.instance = args.instance
    return run_service("steer controllers", run(config))


if __name__ == "__main__":
    sys.exit(main())
