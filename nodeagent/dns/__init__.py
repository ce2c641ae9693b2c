"""Cluster DNS, served by each node agent to its pods, as CoreDNS's kubernetes plugin answers.

    names       what a question's name asks for inside the cluster domain
    records     the answer, from the Services and Endpoints known (pure)
    responding  query bytes to response bytes: checks, SERVFAIL, truncation (pure)
    serving     the UDP and TCP sockets: `serve(source, address, port, domain=, ready=)`
    source      where Services and Endpoints come from: `Source`, `MirrorSource`, `Snapshot`
    resolvconf  the resolv.conf a pod gets (pure)

The node agent runs `serve(MirrorSource(proxy.services, proxy.endpoints), gateway, 53,
domain=..., ready=...)` in its TaskGroup, and writes each pod's `resolv_conf(pod, gateway, ...)`.
"""

from nodeagent.dns.names import DEFAULT_DOMAIN
from nodeagent.dns.resolvconf import ResolverConfig, pod_resolver, read_resolv_conf, resolv_conf
from nodeagent.dns.serving import listening, serve
from nodeagent.dns.source import MirrorSource, Snapshot, Source

__all__ = [
    "DEFAULT_DOMAIN",
    "MirrorSource",
    "ResolverConfig",
    "Snapshot",
    "Source",
    "listening",
    "pod_resolver",
    "read_resolv_conf",
    "resolv_conf",
    "serve",
]
