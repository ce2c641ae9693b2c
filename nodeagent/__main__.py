"""`python -m nodeagent`: run one node agent (or many hollow ones, for scale tests)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys
from pathlib import Path

from bus import credentials, tlsclient
from bus.connection import Credentials
from bus.runner import run_service
from nodeagent.agent import run
from nodeagent.config import AgentConfig, default_capacity, parse_capacity, parse_pairs, parse_taints
from nodeagent.networking import clean_up


def parse_args(argv: list[str]) -> tuple[AgentConfig, int]:
    parser = argparse.ArgumentParser(prog="steer nodeagent", description="Run a node agent.")
    parser.add_argument("--name", required=True, help="node name (a DNS-1123 label)")
    parser.add_argument("--address", default="127.0.0.1", help="the node's address (loopback here)")
    parser.add_argument("--runtime", default="auto", choices=["auto", "docker", "process", "fake"])
    parser.add_argument("--capacity", default="", help="e.g. cpu=2,memory=4Gi,pods=110")
    parser.add_argument("--labels", default="", help="k=v,...")
    parser.add_argument("--taints", default="", help="k=v:NoSchedule,...")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS URL(s), comma-separated")
    parser.add_argument(
        "--creds", help="credentials file: an .nk file from `steer credentials`, or a NATS .creds file"
    )
    tlsclient.add_arguments(parser)
    parser.add_argument(
        "--data-dir", default=".steer/nodes", help="where the process runtime keeps its files"
    )
    parser.add_argument("--backoff", default="10,300,600", help="restart back-off: initial,cap,reset seconds")
    parser.add_argument("--lease", default="12,3", help="lease duration,renew interval in seconds")
    parser.add_argument("--ports", default="20000-29999", help="host ports to allocate from, FIRST-LAST")
    parser.add_argument("--resync", type=float, default=30.0, help="seconds between full re-listings of pods")
    parser.add_argument(
        "--metrics-interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between node and pod usage samples and proxy request counts (0: publish none)",
    )
    parser.add_argument(
        "--container-gc-delay",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long the stopped containers of a finished pod are kept before removal (0: none)",
    )
    parser.add_argument(
        "--proxy",
        default="round-robin",
        choices=["round-robin", "least-connections", "random", "off"],
        help="how Services balance new connections, or off (always off with --hollow)",
    )
    parser.add_argument(
        "--network",
        default="auto",
        choices=["auto", "pod", "host"],
        help="pod: a namespace and address per pod; host: the host's network; auto: pod where possible",
    )
    parser.add_argument("--cluster-cidr", default="10.244.0.0/16", help="the pod addresses of all nodes")
    parser.add_argument("--service-cidr", default="10.96.0.0/16", help="the ClusterIPs of Services")
    parser.add_argument(
        "--clean-up",
        action="store_true",
        help="remove the pod network this node made (namespaces, links, bridge, rules) and exit",
    )
    parser.add_argument(
        "--hollow", type=int, default=1, help="run N agents (names NAME-0..N-1) in this process"
    )
    args = parser.parse_args(argv)
    try:
        first, _, last = args.ports.partition("-")
        port_range = (int(first), int(last))
        if not 1024 <= port_range[0] <= port_range[1] <= 65535:
            raise ValueError("--ports must be FIRST-LAST within 1024-65535")
        backoff = [float(x) for x in args.backoff.split(",")]
        lease = [float(x) for x in args.lease.split(",")]
        if len(backoff) != 3 or len(lease) != 2 or min(backoff + lease) <= 0:
            raise ValueError("--backoff takes three positive numbers, --lease two")
        config = AgentConfig(
            name=args.name,
            address=args.address,
            runtime=args.runtime,
            servers=args.nats,
            credentials=Credentials(creds_file=args.creds, tls=tlsclient.from_args(args)),
            capacity=parse_capacity(args.capacity) if args.capacity else default_capacity(),
            labels=parse_pairs(args.labels, "--labels"),
            taints=parse_taints(args.taints),
            data_dir=Path(args.data_dir),
            backoff_initial=backoff[0],
            backoff_cap=backoff[1],
            backoff_reset=backoff[2],
            lease_duration=lease[0],
            lease_renew=lease[1],
            resync_interval=args.resync,
            metrics_interval=args.metrics_interval,
            container_gc_delay=args.container_gc_delay,
            # Hollow agents share one address: their proxies would fight over every port.
            proxy=args.proxy if args.hollow == 1 else "off",
            port_range=port_range,
            network=args.network if args.hollow == 1 else "host",
            cluster_cidr=str(ipaddress.IPv4Network(args.cluster_cidr)),
            service_cidr=str(ipaddress.IPv4Network(args.service_cidr)),
            clean_up=args.clean_up,
        )
    except ValueError as err:
        parser.error(str(err))
    if args.metrics_interval < 0 or args.container_gc_delay < 0:
        parser.error("--metrics-interval and --container-gc-delay must not be negative")
    if args.hollow < 1:
        parser.error("--hollow must be at least 1")
    if args.creds:
        _check_identity(parser, args.creds, args.name, args.hollow)
    return config, args.hollow


def _check_identity(parser: argparse.ArgumentParser, path: str, name: str, hollow: int) -> None:
    """A node credential is good for its own node only: NATS would refuse every subject of
    another node anyway; say so at once rather than run an agent that can do nothing."""
    try:
        credential = credentials.load(path, warn=False)
    except credentials.CredentialsError as err:
        parser.error(err.message)
    if credential.role == "node" and (credential.identity != name or hollow > 1):
        parser.error(
            f'{path} is the credential of node "{credential.identity}": it cannot register node "{name}"'
            + (f" (nor {hollow} hollow nodes)" if hollow > 1 else "")
        )


async def run_many(config: AgentConfig, count: int) -> None:
    """Hollow agents: `count` nodes in one process, sharing one event loop."""
    from dataclasses import replace

    async with asyncio.TaskGroup() as tasks:
        for i in range(count):
            tasks.create_task(run(replace(config, name=f"{config.name}-{i}")))


def run_clean_up(config: AgentConfig) -> int:
    """The node's pod network removed, in one go (not a service: it ends when done)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        asyncio.run(clean_up(config))
    except OSError as err:
        print(f"steer nodeagent {config.name}: cannot remove the pod network: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    config, count = parse_args(sys.argv[1:] if argv is None else argv)
    name = f"steer nodeagent {config.name}"
    if config.clean_up:
        return run_clean_up(config)
    return run_service(name, run(config) if count == 1 else run_many(config, count))


if __name__ == "__main__":
    sys.exit(main())
