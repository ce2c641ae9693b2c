"""The kernel side of the routes between nodes (noderoutes.py): asking how an address is reached,
and listing, adding, replacing and deleting the routes the agent made, through pyroute2.

Our routes carry a protocol number of their own (`PROTO`, `ip route ... proto 83`; the kernel
does not interpret numbers above 4, `/etc/iproute2/rt_protos` reserves 8 to 192 here and there
and not this one). A route is ours when it has that protocol *and* lies inside the cluster
CIDR: agents of another cluster sharing the namespace (another cluster CIDR) never touch our
routes, nor we theirs; routes anyone else made are never ours. Agents of one cluster that share
a namespace (several nodes on one host) want the very same routes, so they share them.

pyroute2's IPRoute runs an event loop of its own: call these from a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from pyroute2 import IPRoute, NetlinkError

log = logging.getLogger(__name__)

PROTO = 83  # "S": the routes a steersman node agent made
MAIN_TABLE = 254
RTN_UNICAST, RTN_LOCAL = 1, 2
AF_INET = 2


class Reach(Enum):
    """How this namespace reaches an address."""

    LOCAL = "local"  # one of its own (a node sharing the namespace, or this node)
    ON_LINK = "on-link"  # on a directly connected network: a route through it works
    GATEWAY = "through a gateway"  # only through a router, which knows nothing of pod CIDRs
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Route:
    dst: str  # a CIDR
    gateway: str
    oif: int


def reach(addresses: Iterable[str]) -> dict[str, tuple[Reach, int]]:
    """How each address is reached from here, and through which interface (0: none), as the
    kernel's own route lookup says (`ip route get`)."""
    found: dict[str, tuple[Reach, int]] = {}
    with IPRoute() as ipr:
        for address in addresses:
            try:
                route = ipr.route("get", dst=address)[0]
            except NetlinkError:  # ENETUNREACH, EHOSTUNREACH, ...
                found[address] = (Reach.UNREACHABLE, 0)
                continue
            oif = int(route.get_attr("RTA_OIF") or 0)
            if route["type"] == RTN_LOCAL:
                found[address] = (Reach.LOCAL, oif)
            elif route["type"] != RTN_UNICAST or not oif:
                found[address] = (Reach.UNREACHABLE, 0)
            elif route.get_attr("RTA_GATEWAY"):
                found[address] = (Reach.GATEWAY, oif)
            else:
                found[address] = (Reach.ON_LINK, oif)
    return found


def owned(cluster_cidr: str) -> dict[str, Route]:
    """Our routes (PROTO, main table, inside the cluster CIDR), by destination."""
    cluster = ipaddress.IPv4Network(cluster_cidr)
    routes: dict[str, Route] = {}
    with IPRoute() as ipr:
        for route in ipr.get_routes(family=AF_INET, table=MAIN_TABLE):
            if route["proto"] != PROTO or route.get_attr("RTA_DST") is None:
                continue
            dst = ipaddress.IPv4Network(f"{route.get_attr('RTA_DST')}/{route['dst_len']}")
            if dst.subnet_of(cluster):
                gateway = str(route.get_attr("RTA_GATEWAY") or "")
                routes[str(dst)] = Route(str(dst), gateway, int(route.get_attr("RTA_OIF") or 0))
    return routes


def add(route: Route) -> bool:
    """Add one of our routes; False if some other route holds its destination already."""
    with IPRoute() as ipr:
        try:
            ipr.route("add", **_fields(route))
        except NetlinkError as err:
            if err.code == errno.EEXIST:
                return False
            raise
    return True


def replace(route: Route) -> None:
    """Point one of our routes elsewhere (the destination is ours: nothing else is replaced)."""
    with IPRoute() as ipr:
        ipr.route("replace", **_fields(route))


def delete(route: Route) -> None:
    """Delete one of our routes; no error if it went meanwhile."""
    with IPRoute() as ipr:
        try:
            ipr.route("del", **_fields(route))
        except NetlinkError as err:
            if err.code != errno.ESRCH:
                raise


def _fields(route: Route) -> dict[str, object]:
    fields: dict[str, object] = {"dst": route.dst, "table": MAIN_TABLE, "proto": PROTO}
    if route.gateway:
        fields["gateway"] = route.gateway
    if route.oif:
        fields["oif"] = route.oif
    return fields
