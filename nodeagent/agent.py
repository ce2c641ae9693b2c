"""The node agent: registers its Node, keeps it alive, runs the pods bound to it, and runs the
service proxy (`nodeagent.proxy`).

Which pods are bound here comes from two sources: the API's feed on `steer.node.<node>.feed.pods`
(every change, as it happens) and a full listing at start, after a reconnect, and every
`resync_interval` (so a lost feed message only delays things). Each pod gets one PodWorker,
keyed by uid; a worker is level-based: it is handed the newest version of its pod and converges.

At start the agent adopts what the runtime already runs for this node: containers of pods that
still exist keep running (no restart), the others are stopped and removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from bus import subjects
from bus.client import Client
from bus.connection import announce, close, connect, fail_when_closed, link, subscribe_checked
from bus.errors import Internal, NotFound, SteerError, Timeout, Unavailable
from bus.protocol import FEED_EVENT_HEADER
from bus.recorder import Recorder
from bus.resources import Pod
from nodeagent import networking
from nodeagent.backoff import BackoffPolicy
from nodeagent.config import AgentConfig
from nodeagent.metrics import NodeMetricsPublisher, RunningContainer
from nodeagent.network.hostports import HostPorts
from nodeagent.network.mode import resolve_mode
from nodeagent.network.podnetwork import PodNetwork
from nodeagent.ports import PortAllocator
from nodeagent.proxy import ProxyConfig, ServiceProxy
from nodeagent.proxy.feed import ServiceFeed
from nodeagent.reaper import ContainerReaper, dispose
from nodeagent.registration import Registration
from nodeagent.resync import resync_loop
from nodeagent.runtime import ContainerInfo, Runtime, RuntimeFailure, Sandbox
from nodeagent.runtime.factory import make_runtime
from nodeagent.streaming import StreamServer
from nodeagent.takeover import TakeOvers
from nodeagent.worker import PodWorker, WorkerContext

log = logging.getLogger(__name__)

ORPHAN_GRACE = 2.0
STEP_RETRY_FIRST = 0.2  # seconds between tries of a start-up step, doubling
STEP_RETRY_CAP = 2.0
REAPER_FLUSH = 10.0  # seconds a stopping agent spends removing the containers it kept
# The agent pings its server every Lease renewal period and gives a connection up, for a new one,
# when this many pings are unanswered: two to three periods after its link died silently (its
# server's host lost, a cable, a firewall that drops), not nats-py's 15 to 20 s. Others judge the
# node by its renewals alone: with several servers, an agent whose server went silent moves to
# another well within the node's grace period (10 s), not after it, when its pods would be
# evicted 8 s later although the node and the rest of the bus are well.
LINK_PINGS = 2
_pod_decoder = msgspec.json.Decoder(Pod)


@dataclass
class Agent:
    config: AgentConfig
    nc: NATS
    client: Client
    runtime: Runtime
    tasks: asyncio.TaskGroup
    reaper: ContainerReaper | None = None
    network: PodNetwork | None = None

    def __post_init__(self) -> None:
        self.workers: dict[str, PodWorker] = {}
        self.take_overs = TakeOvers(self.runtime, self.config.name, self.workers.get, self._replace)
        # Feed messages are held until adoption is done: a worker started from the feed first
        # would not know the containers a previous agent left running, and start them again.
        self.adopted = False
        self.held: list[Msg] = []
        self.context = WorkerContext(
            node=self.config.name,
            address=self.config.address,
            client=self.client,
            runtime=self.runtime,
            ports=PortAllocator(self.config.address, *self.config.port_range),
            recorder=Recorder(self.client, component="steer-nodeagent", host=self.config.name),
            backoff=BackoffPolicy(
                self.config.backoff_initial, self.config.backoff_cap, self.config.backoff_reset
            ),
            reaper=self.reaper,
            network=self.network,
            host_ports=HostPorts(self.config.name, self.config.address) if self.network else None,
        )

    # -- pods

    def _start_worker(self, pod: Pod, adopted: list[ContainerInfo], sandbox: Sandbox | None = None) -> None:
        worker = PodWorker(self.context, pod, adopted, sandbox)
        self.workers[pod.metadata.uid] = worker
        self.tasks.create_task(self._run_worker(worker))

    async def _run_worker(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        except Exception:  # one pod's bug must not stop the others
            log.exception("worker for pod %s failed", worker.key)
            if self.workers.get(worker.uid) is worker:
                self.take_overs.failed(worker)  # it keeps the pod's place until replaced
            return
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]
            self.take_overs.ended(worker.uid)

    def _replace(self, failed: PodWorker, containers: list[ContainerInfo]) -> None:
        self._start_worker(failed.pod, containers)
        if failed.removed:
            self.workers[failed.uid].gone()

    def observe(self, pod: Pod) -> None:
        """The newest known version of a pod bound here."""
        worker = self.workers.get(pod.metadata.uid)
        if worker is not None:
            worker.update(pod)
        else:
            self._start_worker(pod, [])  # a terminating one is finished off by its worker

    def forget(self, pod: Pod) -> None:
        """The pod is gone from the store."""
        worker = self.workers.get(pod.metadata.uid)
        if worker is not None:
            worker.gone()

    async def on_feed(self, msg: Msg) -> None:
        if not self.adopted:
            self.held.append(msg)
            return
        self._take(msg)

    def _take(self, msg: Msg) -> None:
        """One feed message. Whoever may publish on the feed can send anything: what cannot be
        handled is logged and dropped, and the next listing puts things right."""
        try:
            pod = _pod_decoder.decode(msg.data)
        except msgspec.DecodeError as err:
            log.warning("malformed pod on the feed (%s); ignored", err)
            return
        if pod.spec.node_name != self.config.name:
            return
        deleted = (msg.headers or {}).get(FEED_EVENT_HEADER) == "DELETED"
        self._guarded(self.forget if deleted else self.observe, pod)

    def _guarded(self, act: Callable[[Pod], None], pod: Pod) -> None:
        try:
            act(pod)
        except Exception:  # one pod's bad data, or our bug, must not stop the others
            log.exception("cannot handle pod %s/%s", pod.metadata.namespace, pod.metadata.name)

    async def resync(self) -> None:
        """List our pods and reconcile the workers with the list."""
        pods = await self.client.list(Pod, subjects.ALL)
        listed = {pod.metadata.uid: pod for pod in pods}
        for pod in pods:
            self._guarded(self.observe, pod)
        for uid, worker in list(self.workers.items()):
            if uid in listed:
                continue
            # Not listed: make sure it is really gone (the listing may predate its creation).
            try:
                current = await self.client.get(Pod, worker.name, worker.namespace)
            except NotFound:
                worker.gone()
                continue
            if current.metadata.uid != uid:
                worker.gone()

    # -- start-up

    async def adopt(self) -> None:
        """Take over the containers a previous agent left running; remove the orphans. From
        here on the pods are the agent's: failed workers are replaced (takeover.py)."""
        pods = await self.client.list(Pod, subjects.ALL)
        by_pod: dict[str, list[ContainerInfo]] = defaultdict(list)
        for info in await self.runtime.containers(self.config.name):
            by_pod[info.pod_uid].append(info)
        sandboxes = {}
        if self.network is not None:
            sandboxes = {
                sandbox.pod_uid: sandbox for sandbox in await self.runtime.sandboxes(self.config.name)
            }
        self.tasks.create_task(self.take_overs.run())
        for pod in pods:
            self._start_worker(pod, by_pod.pop(pod.metadata.uid, []), sandboxes.pop(pod.metadata.uid, None))
        for uid, containers in by_pod.items():
            log.info("removing %d container(s) of pod %s, which no longer exists", len(containers), uid)
            self.tasks.create_task(self._remove_orphans(containers))
        if self.network is not None:
            self.tasks.create_task(self._remove_orphan_networks(list(sandboxes.values()), pods))
        self.adopted = True
        held, self.held = self.held, []
        for msg in held:
            self._take(msg)

    async def _remove_orphans(self, containers: list[ContainerInfo]) -> None:
        for info in containers:
            await dispose(self.runtime, info.id, ORPHAN_GRACE)

    async def _remove_orphan_networks(self, sandboxes: list[Sandbox], pods: list[Pod]) -> None:
        """The sandboxes, addresses, links and namespaces of pods that are gone (a previous
        agent may have been killed while making or removing them)."""
        assert self.network is not None
        for sandbox in sandboxes:
            log.info("removing the sandbox of pod %s, which no longer exists", sandbox.pod_uid)
            try:
                await self.runtime.remove_sandbox(sandbox)
            except RuntimeFailure as failure:
                log.warning("cannot remove sandbox %s: %s", sandbox.id[:12], failure.message)
        await self.network.keep_only({pod.metadata.uid for pod in pods})

    def running_containers(self) -> list[RunningContainer]:
        """The containers running now, for the usage samples."""
        return [
            RunningContainer(
                namespace=worker.namespace,
                pod=worker.name,
                pod_uid=worker.uid,
                name=name,
                container_id=run.container_id,
                started_at=run.status.state.running.started_at,
            )
            for worker in self.workers.values()
            for name, run in worker.runs.items()
            if run.container_id and run.status.state.running is not None
        ]

    def find(self, namespace: str, name: str) -> PodWorker | None:
        for worker in self.workers.values():
            if worker.namespace == namespace and worker.name == name:
                return worker
        return None


async def run(config: AgentConfig, *, ready: asyncio.Event | None = None) -> None:
    """Run the node agent until cancelled."""
    log.info("node agent %s starting", config.name)
    resync_now = asyncio.Event()
    proxy_resync = asyncio.Event()
    network_resync = asyncio.Event()

    def reconnected() -> None:
        # The feeds are core NATS: what was published while we were away is lost, so list now.
        log.info("re-listing pods, Services and Endpoints after the reconnect")
        for event in (resync_now, proxy_resync, network_resync):
            event.set()

    nc = await connect(
        config.servers,
        name=f"steer-nodeagent {config.name}",
        credentials=config.credentials,
        wait=True,
        ping_interval=config.lease_renew,
        max_outstanding_pings=LINK_PINGS,
    )
    link(nc).on_reconnect(reconnected)
    runtime: Runtime | None = None
    reaper: ContainerReaper | None = None
    try:
        client = Client(nc, node=config.name)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(fail_when_closed(nc))
            feed = ServiceFeed(nc, client, resync_interval=config.resync_interval, resync_now=proxy_resync)
            tasks.create_task(feed.run())
            # On the host network, the userspace proxy first: it needs only a listing of Services
            # and Endpoints, and the node's Service ports are down from the moment an agent dies
            # until it serves them again; the runtime's probe, adoption and registration need not
            # delay it. (On the pod network the kernel forwards, through an agent's restart.)
            if config.proxy != "off" and config.network == "host":
                tasks.create_task(_userspace_proxy(config, nc, client, feed).run())
            runtime = await make_runtime(config.runtime, root_dir=config.data_dir / config.name)
            if config.container_gc_delay > 0:
                reaper = ContainerReaper(runtime, config.container_gc_delay)
                tasks.create_task(reaper.run())
            requested, config.network = config.network, resolve_mode(config.network, runtime)
            log.info("node %s runs its pods on the %s network", config.name, config.network)
            network = networking.pod_network(config) if config.network == "pod" else None
            agent = Agent(config, nc, client, runtime, tasks, reaper, network)
            if network is not None:
                assert agent.context.host_ports is not None
                tasks.create_task(agent.context.host_ports.run())
                if config.proxy != "off":
                    tasks.create_task(networking.service_forwarding(config, feed).run())
                pod_net = networking.run(
                    config=config,
                    nc=nc,
                    client=client,
                    network=network,
                    feed=feed,
                    ready=agent.context.network_ready,
                    resync_now=network_resync,
                )
                tasks.create_task(pod_net)
            elif config.proxy != "off" and requested != "host":
                tasks.create_task(_userspace_proxy(config, nc, client, feed).run())
            await _serve_pods(agent, await runtime.version(), ready, resync_now)
    except* (SteerError, RuntimeFailure) as failed:  # one clear line, not a group's traceback
        first = failed.exceptions[0]
        if isinstance(first, RuntimeFailure):
            raise Unavailable(f"the container runtime failed: {first.message}") from None
        raise first from None
    finally:
        await close(nc)
        if reaper is not None:
            await reaper.flush(within=REAPER_FLUSH)
        if runtime is not None:
            await runtime.close()


async def _serve_pods(
    agent: Agent, version: str, ready: asyncio.Event | None, resync_now: asyncio.Event
) -> None:
    """The node and its pods, until cancelled: adopt, register, serve logs and exec, heartbeat."""
    config, nc, tasks = agent.config, agent.nc, agent.tasks
    registration = Registration(agent.client, config, version)
    feed = await subscribe_checked(nc, subjects.node_feed(config.name), cb=agent.on_feed)
    try:
        # Adopt first, register (Ready) after: nothing is placed here before we can run it.
        await _until_done(agent.adopt, "list this node's pods")
        await _until_done(registration.register, "register")
        # The heartbeat first: registered, the node is judged by its Lease from now on.
        tasks.create_task(registration.keep_alive())
        tasks.create_task(resync_loop(agent.resync, config.resync_interval, resync_now, "listing pods"))
        streams = StreamServer(nc, config.name, agent.find, agent.runtime, tasks)
        await streams.start()
        await announce(
            nc,
            "nodeagent",
            description="steersman node agent",
            metadata={"instance": config.name, "node": config.name, "runtime": version},
        )
        if config.metrics_interval > 0:
            publisher = NodeMetricsPublisher(
                nc,
                agent.runtime,
                node=config.name,
                interval=config.metrics_interval,
                running=agent.running_containers,
            )
            tasks.create_task(publisher.run())
        log.info("node agent %s ready on %s", config.name, config.address)
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(nats.errors.Error):  # the bus may be gone already
            await feed.unsubscribe()


def _userspace_proxy(config: AgentConfig, nc: NATS, client: Client, feed: ServiceFeed) -> ServiceProxy:
    recorder = Recorder(client, component="steer-nodeagent", host=config.name)
    return ServiceProxy(nc, client, recorder, _proxy_config(config), feed=feed)


def _proxy_config(config: AgentConfig) -> ProxyConfig:
    return ProxyConfig(
        node=config.name,
        address=config.address,
        policy="least-connections" if config.proxy == "least-connections" else "round-robin",
        resync_interval=config.resync_interval,
        metrics_interval=config.metrics_interval,
    )


async def _until_done(step: Callable[[], Awaitable[object]], what: str) -> None:
    """Do a start-up step, waiting for the API (or the container runtime) if it is not up, is
    busy (a whole cluster starting) or failed for now; soon after it answers again (the pause
    is at most 2 s)."""
    delay = STEP_RETRY_FIRST
    while True:
        try:
            await step()
            return
        except (Unavailable, Timeout, Internal, RuntimeFailure) as err:
            pause = delay * random.uniform(0.8, 1.2)
            log.info("cannot %s yet (%s); retrying in %.1fs", what, err, pause)
            await asyncio.sleep(pause)
            delay = min(delay * 2, STEP_RETRY_CAP)
