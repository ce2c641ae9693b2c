"""A pod's sandbox and address on the pod network (the kubelet's RunPodSandbox and CNI ADD).

Before any container of a pod starts, the pod gets its sandbox from the runtime (its network
namespace, hostname and resolv.conf) and an address on the node's bridge. A pod whose sandbox
cannot be made (no pod CIDR yet, the CIDR full, the runtime failing) waits in
ContainerCreating with a `FailedCreatePodSandBox` event and tries again with back-off; nothing
else on the node is held up. At the end the sandbox goes and the address is freed.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pyroute2 import NetlinkError

from nodeagent.dns.resolvconf import ResolverConfig, read_resolv_conf, resolv_conf
from nodeagent.network.ipam import AddressesExhausted
from nodeagent.network.podnetwork import PodNetwork
from nodeagent.runtime import RuntimeFailure, Sandbox, SandboxSpec

if TYPE_CHECKING:
    from nodeagent.worker import PodWorker

log = logging.getLogger(__name__)

RETRY_FIRST = 0.5
RETRY_CAP = 10.0


def host_resolver() -> ResolverConfig:
    """The node's own resolver configuration (for `dnsPolicy: Default`)."""
    try:
        return read_resolv_conf(Path("/etc/resolv.conf").read_text())
    except OSError:
        return ResolverConfig()


class PodSandbox:
    def __init__(self, worker: PodWorker, network: PodNetwork, ready: asyncio.Event) -> None:
        self.worker = worker
        self.network = network
        self.ready = ready  # set once the node's pod network is up (it has a pod CIDR)
        self.sandbox: Sandbox | None = None
        self.address = ""

    def adopt(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    async def establish(self) -> bool:
        """Make the sandbox and plug it in; False if the pod stopped first."""
        worker, delay = self.worker, RETRY_FIRST
        while not worker.stopping.is_set() and not worker.removed:
            if not self.ready.is_set():
                await self._wait_ready()
                continue
            try:
                await self._establish_once()
                return True
            except (RuntimeFailure, AddressesExhausted, NetlinkError, OSError, LookupError) as err:
                message = getattr(err, "message", None) or str(err)
                log.warning("pod %s: cannot set up its sandbox: %s", worker.key, message)
                worker.spawn(
                    worker.ctx.recorder.warning(
                        worker.pod, "FailedCreatePodSandBox", f"Failed to create pod sandbox: {message}"
                    )
                )
            if await worker.sleep_unless_stopping(delay):
                return False
            delay = min(delay * 2, RETRY_CAP)
        return False

    async def _wait_ready(self) -> None:
        waiting = asyncio.ensure_future(self.ready.wait())
        woken = asyncio.ensure_future(self.worker.wake.wait())
        try:
            await asyncio.wait({waiting, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
            woken.cancel()
        self.worker.wake.clear()

    async def _establish_once(self) -> None:
        worker = self.worker
        pod = worker.pod
        if self.sandbox is None or not self.sandbox.running:
            spec = SandboxSpec(
                node=worker.ctx.node,
                pod_uid=worker.uid,
                pod_namespace=worker.namespace,
                pod_name=worker.name,
                hostname=pod.spec.hostname or worker.name,
                resolv_conf=resolv_conf(pod, self.network.gateway, host=host_resolver()),
            )
            self.sandbox = await worker.ctx.runtime.start_sandbox(spec)
        self.address = await self.network.attach(worker.uid, self.sandbox.netns)
        worker.changed()

    async def release(self) -> None:
        """Remove the sandbox and free the address (again while the runtime fails)."""
        delay = RETRY_FIRST
        while self.sandbox is not None:
            try:
                await self.worker.ctx.runtime.remove_sandbox(self.sandbox)
                self.sandbox = None
            except RuntimeFailure as failure:
                log.warning("pod %s: cannot remove its sandbox: %s", self.worker.key, failure.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP)
        await self.network.detach(self.worker.uid)
