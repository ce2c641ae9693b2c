"""Rules of a pod spec, shared by Pods and by the pod templates of ReplicaSets and Deployments.

Every check takes the path of the spec it is given (`spec` for a Pod, `spec.template.spec` for a
template), so a cause names the field the way the user wrote it.
"""

from __future__ import annotations

from bus.errors import StatusCause
from bus.quantity import parse_quantity
from bus.resources.pod import (
    Affinity,
    Container,
    ContainerPort,
    DNSPolicy,
    NodeSelectorTerm,
    PodDNSConfig,
    PodSpec,
    Probe,
    ResourceRequirements,
    Toleration,
)
from bus.validation.rules import (
    at_least,
    dns1123_label,
    dns1123_subdomain,
    duplicate,
    env_var_name,
    forbidden,
    formatted,
    http_header_name,
    http_header_value,
    in_range,
    invalid_value,
    ip_address,
    label_map,
    label_value,
    no_nul,
    port_name,
    port_number,
    port_number_or_name,
    qualified_name,
    quantity,
    required,
    selector_requirement,
    unsupported,
)
from bus.validation.schema import join

CONTAINER_RESOURCES = ("cpu", "memory")


def pod_spec(spec: PodSpec, path: str) -> list[StatusCause]:
    causes = containers(spec.containers, join(path, "containers"))
    causes += at_least(join(path, "terminationGracePeriodSeconds"), spec.termination_grace_period_seconds, 0)
    causes += label_map(join(path, "nodeSelector"), spec.node_selector)
    for i, toleration in enumerate(spec.tolerations):
        causes += _toleration(f"{join(path, 'tolerations')}[{i}]", toleration)
    if spec.affinity is not None:
        causes += _affinity(join(path, "affinity"), spec.affinity)
    if spec.hostname:
        causes += formatted(join(path, "hostname"), spec.hostname, dns1123_label)
    if spec.node_name:  # a Node's name, and a token of the subject its node agent is fed on
        causes += formatted(join(path, "nodeName"), spec.node_name, dns1123_label)
    if spec.subdomain:
        causes += formatted(join(path, "subdomain"), spec.subdomain, dns1123_label)
    causes += dns_config(join(path, "dnsConfig"), spec.dns_config, policy=spec.dns_policy)
    return causes


MAX_DNS_NAMESERVERS = 3  # what libc's resolver reads
MAX_DNS_SEARCH_PATHS = 32
MAX_DNS_SEARCH_LIST_CHARS = 2048


def dns_config(path: str, config: PodDNSConfig | None, *, policy: DNSPolicy) -> list[StatusCause]:
    """Kubernetes' rules, plus one of ours: an option's name and value are single resolv.conf words
    (no blank, no control character), since they are written into the pod's resolv.conf as they are."""
    if policy == "None":
        if config is None:
            return [required(path, "must provide `dnsConfig` when `dnsPolicy` is None")]
        if not config.nameservers:
            detail = "must provide at least one DNS nameserver when `dnsPolicy` is None"
            return [required(join(path, "nameservers"), detail)]
    if config is None:
        return []
    causes: list[StatusCause] = []
    nameservers, searches = join(path, "nameservers"), join(path, "searches")
    if len(config.nameservers) > MAX_DNS_NAMESERVERS:
        detail = f"must not have more than {MAX_DNS_NAMESERVERS} nameservers"
        causes.append(invalid_value(nameservers, config.nameservers, detail))
    for i, server in enumerate(config.nameservers):
        causes += ip_address(f"{nameservers}[{i}]", server)
    if len(config.searches) > MAX_DNS_SEARCH_PATHS:
        detail = f"must not have more than {MAX_DNS_SEARCH_PATHS} search paths"
        causes.append(invalid_value(searches, config.searches, detail))
    if len(" ".join(config.searches)) > MAX_DNS_SEARCH_LIST_CHARS:
        detail = (
            f"must not have more than {MAX_DNS_SEARCH_LIST_CHARS} characters (including spaces) "
            "in the search list"
        )
        causes.append(invalid_value(searches, config.searches, detail))
    for i, search in enumerate(config.searches):
        causes += formatted(f"{searches}[{i}]", search.removesuffix("."), dns1123_subdomain)
    for i, option in enumerate(config.options):
        item = f"{join(path, 'options')}[{i}]"
        if not option.name:
            causes.append(required(item, "must not be empty"))
        causes += formatted(join(item, "name"), option.name, resolv_conf_word)
        if option.value is not None:
            causes += formatted(join(item, "value"), option.value, resolv_conf_word)
    return causes


def resolv_conf_word(value: str) -> list[str]:
    if any(c.isspace() or not c.isprintable() for c in value):
        return ["must not contain blanks or control characters"]
    return []


def containers(items: list[Container], path: str) -> list[StatusCause]:
    """Each container, plus the pod-wide rules: unique container names and unique port names."""
    if not items:
        return [required(path)]
    causes: list[StatusCause] = []
    names: set[str] = set()
    port_names: set[str] = set()
    for i, container in enumerate(items):
        item = f"{path}[{i}]"
        if container.name in names:
            causes.append(duplicate(join(item, "name"), container.name))
        names.add(container.name)
        causes += _container(item, container)
        for j, port in enumerate(container.ports):
            if port.name and port.name in port_names:
                causes.append(duplicate(f"{join(item, 'ports')}[{j}].name", port.name))
            port_names.add(port.name)
    return causes


def _container(path: str, container: Container) -> list[StatusCause]:
    name_path = join(path, "name")
    causes = formatted(name_path, container.name, dns1123_label) if container.name else [required(name_path)]
    if not container.image.strip():
        causes.append(required(join(path, "image")))
    causes += formatted(join(path, "image"), container.image, no_nul)
    causes += formatted(join(path, "workingDir"), container.working_dir, no_nul)
    causes += _strings(join(path, "command"), container.command)
    causes += _strings(join(path, "args"), container.args)
    for i, env in enumerate(container.env):
        causes += formatted(f"{join(path, 'env')}[{i}].value", env.value, no_nul)
    for i, port in enumerate(container.ports):
        causes += _port(f"{join(path, 'ports')}[{i}]", port)
    for i, env in enumerate(container.env):
        causes += formatted(f"{join(path, 'env')}[{i}].name", env.name, env_var_name)
    causes += resources(join(path, "resources"), container.resources)
    for field, probe in (
        ("livenessProbe", container.liveness_probe),
        ("readinessProbe", container.readiness_probe),
        ("startupProbe", container.startup_probe),
    ):
        if probe is not None:
            causes += _probe(join(path, field), probe, single_success=field != "readinessProbe")
    return causes


def _strings(path: str, values: list[str]) -> list[StatusCause]:
    return [cause for i, value in enumerate(values) for cause in formatted(f"{path}[{i}]", value, no_nul)]


def _port(path: str, port: ContainerPort) -> list[StatusCause]:
    causes = port_number(join(path, "containerPort"), port.container_port)
    if port.host_port is not None:
        causes += port_number(join(path, "hostPort"), port.host_port)
    if port.name:
        causes += formatted(join(path, "name"), port.name, port_name)
    return causes


def resources(path: str, requirements: ResourceRequirements) -> list[StatusCause]:
    """Only cpu and memory; valid quantities; a request never above its limit."""
    causes: list[StatusCause] = []
    for section, values in (("limits", requirements.limits), ("requests", requirements.requests)):
        for name, value in values.items():
            item = f"{join(path, section)}[{name}]"
            if name not in CONTAINER_RESOURCES:
                causes.append(unsupported(item, name, CONTAINER_RESOURCES))
            else:
                causes += quantity(item, value)
    if causes:
        return causes
    for name, request in requirements.requests.items():
        limit = requirements.limits.get(name)
        if limit is not None and parse_quantity(request) > parse_quantity(limit):
            causes.append(
                invalid_value(
                    f"{join(path, 'requests')}[{name}]",
                    request,
                    f"must be less than or equal to {name} limit of {limit}",
                )
            )
    return causes


def _probe(path: str, probe: Probe, *, single_success: bool) -> list[StatusCause]:
    handlers = [h for h in (probe.exec, probe.http_get, probe.tcp_socket) if h is not None]
    causes: list[StatusCause] = []
    if not handlers:
        causes.append(required(path, "must specify a handler type"))
    elif len(handlers) > 1:
        causes.append(forbidden(path, "may not specify more than 1 handler type"))
    if probe.exec is not None:
        if not probe.exec.command:
            causes.append(required(join(path, "exec.command")))
        causes += _strings(join(path, "exec.command"), probe.exec.command)
    if probe.http_get is not None:
        http = join(path, "httpGet")
        causes += port_number_or_name(join(http, "port"), probe.http_get.port)
        causes += formatted(join(http, "path"), probe.http_get.path, no_nul)
        causes += formatted(join(http, "host"), probe.http_get.host, no_nul)
        for i, header in enumerate(probe.http_get.http_headers):
            item = f"{join(http, 'httpHeaders')}[{i}]"
            causes += formatted(join(item, "name"), header.name, http_header_name)
            causes += formatted(join(item, "value"), header.value, http_header_value)
    if probe.tcp_socket is not None:
        causes += port_number_or_name(join(path, "tcpSocket.port"), probe.tcp_socket.port)
        causes += formatted(join(path, "tcpSocket.host"), probe.tcp_socket.host, no_nul)
    causes += at_least(join(path, "initialDelaySeconds"), probe.initial_delay_seconds, 0)
    for field, value in (
        ("periodSeconds", probe.period_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ):
        causes += at_least(join(path, field), value, 1)
    if single_success and probe.success_threshold != 1:
        causes.append(invalid_value(join(path, "successThreshold"), probe.success_threshold, "must be 1"))
    return causes


def _toleration(path: str, toleration: Toleration) -> list[StatusCause]:
    causes: list[StatusCause] = []
    if toleration.key:
        causes += formatted(join(path, "key"), toleration.key, qualified_name)
    elif toleration.operator != "Exists":
        causes.append(
            invalid_value(
                join(path, "operator"),
                toleration.operator,
                'operator must be Exists when `key` is empty, which means "match all values and all keys"',
            )
        )
    if toleration.operator == "Exists" and toleration.value:
        causes.append(
            invalid_value(
                join(path, "operator"), toleration.value, "value must be empty when `operator` is 'Exists'"
            )
        )
    else:
        causes += formatted(join(path, "value"), toleration.value, label_value)
    if toleration.toleration_seconds is not None and toleration.effect != "NoExecute":
        causes.append(
            invalid_value(
                join(path, "effect"),
                toleration.effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            )
        )
    return causes


def _affinity(path: str, affinity: Affinity) -> list[StatusCause]:
    node = affinity.node_affinity
    if node is None:
        return []
    path = join(path, "nodeAffinity")
    causes: list[StatusCause] = []
    required_terms = node.required_during_scheduling_ignored_during_execution
    if required_terms is not None:
        terms_path = join(path, "requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms")
        if not required_terms.node_selector_terms:
            causes.append(required(terms_path, "must have at least one node selector term"))
        for i, term in enumerate(required_terms.node_selector_terms):
            causes += _node_selector_term(f"{terms_path}[{i}]", term)
    preferred_path = join(path, "preferredDuringSchedulingIgnoredDuringExecution")
    for i, preferred in enumerate(node.preferred_during_scheduling_ignored_during_execution):
        item = f"{preferred_path}[{i}]"
        causes += in_range(join(item, "weight"), preferred.weight, 1, 100)
        causes += _node_selector_term(join(item, "preference"), preferred.preference)
    return causes


def _node_selector_term(path: str, term: NodeSelectorTerm) -> list[StatusCause]:
    expressions = join(path, "matchExpressions")
    return [
        cause
        for i, requirement in enumerate(term.match_expressions)
        for cause in selector_requirement(f"{expressions}[{i}]", requirement)
    ]
