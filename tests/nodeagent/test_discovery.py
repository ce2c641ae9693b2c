"""Service discovery env vars: Kubernetes' names (unit), and what a real container sees (Docker)."""

from __future__ import annotations

import uuid

import pytest

from bus.client import Client
from bus.meta import ObjectMeta
from bus.resources import Namespace, Pod, Service
from bus.resources.networking import ServicePort, ServiceSpec
from bus.store import Store
from bus.streams import ExecRequest, run_exec
from nodeagent.discovery import service_env
from tests.nodeagent.conftest import StartAgent
from tests.nodeagent.test_agent_docker import container, pod, running
from tests.waiting import wait_for


def service(name: str, *ports: ServicePort, namespace: str = "default") -> Service:
    return Service(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=ServiceSpec(ports=list(ports), selector={"app": name}),
    )


def test_one_unnamed_port() -> None:
    assert service_env([service("redis-primary", ServicePort(port=6379))], "127.0.0.11") == {
        "REDIS_PRIMARY_SERVICE_HOST": "127.0.0.11",
        "REDIS_PRIMARY_SERVICE_PORT": "6379",
        "REDIS_PRIMARY_PORT": "tcp://127.0.0.11:6379",
        "REDIS_PRIMARY_PORT_6379_TCP": "tcp://127.0.0.11:6379",
        "REDIS_PRIMARY_PORT_6379_TCP_PROTO": "tcp",
        "REDIS_PRIMARY_PORT_6379_TCP_PORT": "6379",
        "REDIS_PRIMARY_PORT_6379_TCP_ADDR": "127.0.0.11",
    }


def test_named_ports_and_protocols() -> None:
    env = service_env(
        [
            service(
                "web",
                ServicePort(port=80, name="http-alt", target_port="http"),
                ServicePort(port=53, name="dns", protocol="UDP"),
            )
        ],
        "127.0.0.12",
    )
    assert env["WEB_SERVICE_PORT"] == "80"  # the first port
    assert env["WEB_SERVICE_PORT_HTTP_ALT"] == "80"
    assert env["WEB_SERVICE_PORT_DNS"] == "53"
    assert env["WEB_PORT"] == "tcp://127.0.0.12:80"
    assert env["WEB_PORT_53_UDP"] == "udp://127.0.0.12:53"
    assert env["WEB_PORT_53_UDP_PROTO"] == "udp"
    assert len(env) == 2 + 2 + 1 + 2 * 4


@pytest.mark.parametrize(("host", "url"), [("127.0.0.1", "tcp://127.0.0.1:80"), ("::1", "tcp://[::1]:80")])
def test_ipv6_host(host: str, url: str) -> None:
    assert service_env([service("a", ServicePort(port=80))], host)["A_PORT"] == url


def test_no_services_no_variables() -> None:
    assert service_env([], "127.0.0.1") == {}


def with_address(svc: Service, cluster_ip: str) -> Service:
    svc.spec.cluster_ip = cluster_ip
    svc.spec.cluster_ips = [cluster_ip] if cluster_ip else []
    return svc


def test_pod_network_mode_points_at_cluster_ips() -> None:
    services = [
        with_address(service("db", ServicePort(port=5432)), "10.96.4.2"),
        with_address(service("peers", ServicePort(port=7000)), "None"),  # headless: nothing
        with_address(service("old", ServicePort(port=81)), ""),  # stored before addresses: nothing
    ]
    env = service_env(services, "127.0.0.11", cluster_ips=True)
    assert env == {
        "DB_SERVICE_HOST": "10.96.4.2",
        "DB_SERVICE_PORT": "5432",
        "DB_PORT": "tcp://10.96.4.2:5432",
        "DB_PORT_5432_TCP": "tcp://10.96.4.2:5432",
        "DB_PORT_5432_TCP_PROTO": "tcp",
        "DB_PORT_5432_TCP_PORT": "5432",
        "DB_PORT_5432_TCP_ADDR": "10.96.4.2",
    }


def test_host_network_mode_keeps_the_node_address() -> None:
    services = [
        with_address(service("db", ServicePort(port=5432)), "10.96.4.2"),
        with_address(service("peers", ServicePort(port=7000)), "None"),
    ]
    env = service_env(services, "127.0.0.11")
    assert env["DB_SERVICE_HOST"] == env["PEERS_SERVICE_HOST"] == "127.0.0.11"
    assert env == service_env(services, "127.0.0.11", cluster_ips=False)


def environment(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
async def test_a_container_gets_the_services_of_its_namespace(
    client: Client, store: Store, ns: str, start_agent: StartAgent
) -> None:
    agent = await start_agent()
    other = f"t-{uuid.uuid4().hex[:10]}"
    await client.create(Namespace(metadata=ObjectMeta(name=other)))
    await client.create(service("elsewhere", ServicePort(port=81), namespace=other))
    await client.create(
        service(
            "web-api",
            ServicePort(port=8080, name="http", target_port="http"),
            ServicePort(port=9090, name="metrics"),
            namespace=ns,
        )
    )
    await client.create(service("mine", ServicePort(port=82), namespace=ns))
    body = container("exec sleep 3600", "env:\n- {name: MINE_SERVICE_HOST, value: chosen}\n")
    await client.create(pod("client", ns, agent.name, body))
    await wait_for(store, Pod, ns, "client", running)
    await client.create(service("later", ServicePort(port=83), namespace=ns))

    reply = await run_exec(client.nc, agent.name, ExecRequest(namespace=ns, pod="client", command=["env"]))
    assert reply.exit_code == 0, reply.output
    env = environment(reply.output.decode())
    assert env["WEB_API_SERVICE_HOST"] == agent.address  # the proxy of the container's own node
    assert env["WEB_API_SERVICE_PORT"] == "8080"
    assert env["WEB_API_SERVICE_PORT_HTTP"] == "8080"
    assert env["WEB_API_SERVICE_PORT_METRICS"] == "9090"
    assert env["WEB_API_PORT_9090_TCP"] == f"tcp://{agent.address}:9090"
    assert env["MINE_SERVICE_HOST"] == "chosen"  # the container's own env wins
    assert env["MINE_SERVICE_PORT"] == "82"
    assert env["POD_NAME"] == "client"
    assert not [name for name in env if name.startswith(("ELSEWHERE_", "LATER_"))]
