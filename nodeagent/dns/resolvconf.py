"""The resolv.conf a pod gets, as the kubelet builds it (pure).

By `spec.dnsPolicy`:

- `ClusterFirst` (the default) and `ClusterFirstWithHostNet`: the node's DNS server only,
  `search <ns>.svc.<domain> svc.<domain> <domain>`, `options ndots:5`. A `ClusterFirst` pod on
  the host network gets `Default` instead, as in Kubernetes. Unlike the kubelet, the host's own
  search domains are not appended: they lie outside the cluster domain, which the node's DNS
  server refuses, so they would only add failing lookups;
- `Default`: the node's own resolver configuration (its /etc/resolv.conf, `read_resolv_conf`);
- `None`: nothing but `spec.dnsConfig`.

Then `spec.dnsConfig` is merged in: its nameservers and searches appended (duplicates dropped),
its options overriding those of the same name (written `name:value`, or `name` alone
without a value). As the
kubelet does, the result is cut to 3 nameservers and to 32 search domains of 2048 characters in all.
"""

from __future__ import annotations

from dataclasses import dataclass

from bus.resources import Pod
from bus.resources.pod import PodDNSConfig
from nodeagent.dns.names import DEFAULT_DOMAIN

MAX_NAMESERVERS = 3
MAX_SEARCHES = 32
MAX_SEARCH_CHARS = 2048
CLUSTER_OPTIONS = ("ndots:5",)


@dataclass(frozen=True)
class ResolverConfig:
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()  # `name` or `name:value`

    def text(self) -> str:
        lines = [f"nameserver {server}" for server in self.nameservers]
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "".join(f"{line}\n" for line in lines)


def resolv_conf(
    pod: Pod, nameserver: str, *, domain: str = DEFAULT_DOMAIN, host: ResolverConfig | None = None
) -> str:
    """The text of the pod's /etc/resolv.conf; `nameserver` is the node's DNS server address."""
    return pod_resolver(pod, nameserver, domain=domain, host=host).text()


def pod_resolver(
    pod: Pod, nameserver: str, *, domain: str = DEFAULT_DOMAIN, host: ResolverConfig | None = None
) -> ResolverConfig:
    policy = pod.spec.dns_policy
    if policy == "ClusterFirst" and pod.spec.host_network:
        policy = "Default"
    match policy:
        case "None":
            base = ResolverConfig()
        case "Default":
            base = host or ResolverConfig()
        case _:
            domain = domain.strip(".")
            namespace = pod.metadata.namespace
            searches = (f"{namespace}.svc.{domain}", f"svc.{domain}", domain)
            base = ResolverConfig((nameserver,), searches, CLUSTER_OPTIONS)
    if pod.spec.dns_config is not None:
        base = _merged(base, pod.spec.dns_config)
    return _fitted(base)


def _merged(base: ResolverConfig, extra: PodDNSConfig) -> ResolverConfig:
    options: dict[str, str] = {}
    for option in base.options:
        name, _, value = option.partition(":")
        options[name] = value
    for added in extra.options:
        options[added.name] = added.value or ""
    return ResolverConfig(
        nameservers=_unique([*base.nameservers, *extra.nameservers]),
        searches=_unique([*base.searches, *extra.searches]),
        options=tuple(f"{name}:{value}" if value else name for name, value in options.items()),
    )


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _fitted(config: ResolverConfig) -> ResolverConfig:
    searches = list(config.searches[:MAX_SEARCHES])
    while len(" ".join(searches)) > MAX_SEARCH_CHARS:
        searches.pop()
    return ResolverConfig(config.nameservers[:MAX_NAMESERVERS], tuple(searches), config.options)


def read_resolv_conf(text: str) -> ResolverConfig:
    """A host's resolv.conf, as the kubelet reads it (for `dnsPolicy: Default`)."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        match fields:
            case ["nameserver", server, *_]:
                nameservers.append(server)
            case ["search", *domains]:
                searches = [d.removesuffix(".") for d in domains]  # the last search line counts
            case ["options", *values]:
                options += values
    return ResolverConfig(tuple(nameservers), tuple(searches), tuple(options))
