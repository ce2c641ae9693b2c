"""Containers in a Docker engine, through aiodocker (one client per runtime).

Containers use host networking and carry the labels of base.py, so a restarted agent finds them
(`containers(node)`) and agents sharing an engine never touch each other's. Docker is told not to
restart anything: restarts, with their back-off, are the agent's decision.

aiodocker raises `DockerError` for everything (status 900 when the engine cannot be reached);
every call goes through `_errors`, which turns it into a RuntimeFailure with a readable message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import signal
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError
from aiodocker.execs import Exec

from nodeagent.network import links, names
from nodeagent.runtime.base import (
    LABEL_NODE,
    LABEL_POD_UID,
    LABEL_SANDBOX,
    ContainerInfo,
    ContainerNotFound,
    ContainerSpec,
    ContainerStats,
    ContainerStatus,
    ExecResult,
    ImageNeverPullError,
    ImagePullError,
    LineBuffer,
    RuntimeFailure,
    Sandbox,
    SandboxSpec,
    StartError,
    all_of,
    owner,
)
from nodeagent.runtime.sandboximage import SANDBOX_COMMAND, SANDBOX_IMAGE, NoBusybox, sandbox_image_tar

log = logging.getLogger(__name__)

UNREACHABLE = 900  # aiodocker's status for a connection error
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")
_STATUS: dict[str, ContainerStatus] = {"created": "created", "running": "running", "paused": "running"}
_NEVER = "0001-01-01T00:00:00Z"  # Docker's zero time: never started or never finished


def container_name(spec: ContainerSpec) -> str:
    """steer_<node>_<namespace>_<pod>_<uid>_<container>_<attempt>, in the characters Docker
    accepts. The pod's uid (as in the kubelet's names) keeps a pod made again under the same name
    clear of the containers its predecessor left for the reaper."""
    pod = f"{spec.pod_namespace}_{spec.pod_name}_{spec.pod_uid[:8]}"
    raw = f"steer_{spec.node}_{pod}_{spec.name}_{spec.attempt}"
    return _NAME_UNSAFE.sub("-", raw)


def sandbox_name(spec: SandboxSpec) -> str:
    pod = f"{spec.pod_namespace}_{spec.pod_name}_{spec.pod_uid[:8]}"
    return _NAME_UNSAFE.sub("-", f"steer_{spec.node}_{pod}_POD")


def sandbox_config(spec: SandboxSpec, image: str) -> dict[str, Any]:
    """A container that only holds the pod's namespaces (as the kubelet's pause container): no
    network but its loopback until the agent plugs it in, the pod's hostname, its resolv.conf."""
    config: dict[str, Any] = {
        "Image": image,
        "Cmd": SANDBOX_COMMAND,
        "Labels": spec.labels(),
        "Hostname": spec.hostname[:63],
        "HostConfig": {"NetworkMode": "none", "RestartPolicy": {"Name": "no"}},
    }
    dns = _resolv_settings(spec.resolv_conf)
    if dns:
        config["HostConfig"].update(dns)
    return config


def _resolv_settings(text: str) -> dict[str, list[str]]:
    """resolv.conf text as Docker's Dns, DnsSearch and DnsOptions."""
    settings: dict[str, list[str]] = {"Dns": [], "DnsSearch": [], "DnsOptions": []}
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "nameserver":
            settings["Dns"].append(rest.strip())
        elif word == "search":
            settings["DnsSearch"] += rest.split()
        elif word == "options":
            settings["DnsOptions"] += rest.split()
    return {key: value for key, value in settings.items() if value}


def container_config(spec: ContainerSpec) -> dict[str, Any]:
    """The create request. Kubernetes semantics for the command: `command` replaces the image's
    ENTRYPOINT (and then its CMD is dropped), `args` replace its CMD; with neither, the image's."""
    config: dict[str, Any] = {
        "Image": spec.image,
        "Labels": spec.labels(),
        "Env": [f"{key}={value}" for key, value in spec.env.items()],
        "HostConfig": {"NetworkMode": "host", "RestartPolicy": {"Name": "no"}},
    }
    if spec.sandbox:  # the pod's network and hostname, as the kubelet's dockershim joined them
        config["HostConfig"]["NetworkMode"] = f"container:{spec.sandbox}"
    if spec.command:
        config["Entrypoint"] = spec.command
    if spec.args:
        config["Cmd"] = spec.args
    if spec.working_dir:
        config["WorkingDir"] = spec.working_dir
    if spec.cpu_millis is not None:
        config["HostConfig"]["NanoCpus"] = spec.cpu_millis * 1_000_000
    if spec.memory_bytes is not None:
        config["HostConfig"]["Memory"] = spec.memory_bytes
    return config


def _failure(err: DockerError, action: str, container_id: str | None = None) -> RuntimeFailure:
    if err.status == 404 and container_id is not None:
        return ContainerNotFound(f"no container {container_id}")
    if err.status == UNREACHABLE:
        return RuntimeFailure(f"the Docker engine does not answer: {err.message}")
    return RuntimeFailure(f"docker: cannot {action}: {err.message}")


@contextlib.contextmanager
def _errors(action: str, container_id: str | None = None) -> Iterator[None]:
    """DockerError and aiohttp errors to RuntimeFailure (ContainerNotFound for a 404 on a container)."""
    try:
        yield
    except DockerError as err:
        raise _failure(err, action, container_id) from err
    except aiohttp.ClientError as err:
        raise RuntimeFailure(f"docker: cannot {action}: {err}") from err


class DockerRuntime:
    """A Runtime backed by a Docker engine (see the module docstring)."""

    name = "docker"

    def __init__(self, url: str | None = None) -> None:
        """`url` is unix:///var/run/docker.sock, tcp://host:2375...; by default DOCKER_HOST or the socket."""
        try:
            self._docker = aiodocker.Docker(url=url)
        except (AssertionError, ValueError) as err:  # aiodocker asserts when it finds no socket at all
            raise RuntimeFailure(f"no Docker engine to talk to (set DOCKER_HOST?): {err}") from err
        # aiohttp caps a connector at 100 connections, but every running container holds one
        # open `wait` (and a followed log one more): at 100 containers every other call, even
        # the `start` of the next one, would queue forever. The engine is ours alone to load.
        self._docker.connector._limit = 0
        self.address = url or os.environ.get("DOCKER_HOST") or "the local Docker socket"
        self._local = self._docker.docker_host.startswith("unix://")  # aiodocker's, once resolved

    @property
    def local(self) -> bool:
        """Whether the engine runs on this host (its containers' namespaces are within reach)."""
        return self._local

    async def version(self) -> str:
        with _errors("query the version"):
            return f"docker://{(await self._docker.version())['Version']}"

    async def ensure_image(self, image: str, policy: str) -> str:
        present = await self._image_id(image)
        if policy == "Never":
            if present is None:
                raise ImageNeverPullError(f"image {image} is not present and imagePullPolicy is Never")
            return present
        if present is not None and policy != "Always":
            return present
        try:
            await self._docker.images.pull(image)
        except DockerError as err:
            raise ImagePullError(f"cannot pull image {image}: {err.message}") from err
        except aiohttp.ClientError as err:
            raise ImagePullError(f"cannot pull image {image}: {err}") from err
        pulled = await self._image_id(image)
        if pulled is None:
            raise ImagePullError(f"image {image} is still absent after a pull")
        return pulled

    async def _image_id(self, image: str) -> str | None:
        with _errors(f"inspect image {image}"):
            try:
                return str((await self._docker.images.inspect(image))["Id"])
            except DockerError as err:
                if err.status == 404:
                    return None
                raise

    async def start(self, spec: ContainerSpec) -> str:
        name = container_name(spec)
        with _errors(f"create container {name}"):
            try:
                container = await self._docker.containers.create(container_config(spec), name=name)
            except DockerError as err:
                if err.status == 404:  # the image
                    raise ImagePullError(f"image {spec.image} is not present: {err.message}") from err
                if err.status in (400, 409):  # e.g. no command at all, or the name is taken
                    raise StartError(f"cannot create container {name}: {err.message}") from err
                raise
        try:
            await container.start()
        except (DockerError, aiohttp.ClientError) as err:
            # e.g. "OCI runtime create failed: ... executable file not found in $PATH"
            await self._discard(container.id)
            detail = err.message if isinstance(err, DockerError) else str(err)
            raise StartError(f"cannot start container {spec.name}: {detail}") from err
        except asyncio.CancelledError:
            await asyncio.shield(self._discard(container.id))
            raise
        log.debug("started %s (%s)", name, container.id[:12])
        return container.id

    async def _discard(self, container_id: str) -> None:
        try:
            await self.remove(container_id)
        except RuntimeFailure as failure:
            log.warning("cannot remove failed container %s: %s", container_id[:12], failure)

    async def wait(self, container_id: str) -> int:
        # The engine sends the headers at once and the body when the container exits: a
        # cancelled wait is a stream abandoned halfway, hence `_stream`.
        with _errors("wait for the container", container_id):
            async with self._stream(f"containers/{container_id}/wait", method="POST") as response:
                result = await response.json()
        return int(result["StatusCode"])

    @contextlib.asynccontextmanager
    async def _stream(
        self, path: str, *, method: str = "GET", params: dict[str, Any] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A long request whose response is closed however the caller leaves it.

        aiodocker's own calls for these (`log`, `wait`) leave an abandoned response (a follow
        given up, a wait cancelled) to the garbage collector, and its connection open until then.
        """
        unbounded = aiohttp.ClientTimeout()  # callers bound these with asyncio.timeout if they wish
        async with self._docker._query(path, method, params=params, timeout=unbounded) as response:
            try:
                yield response
            finally:
                response.close()

    async def stop(self, container_id: str, grace_seconds: float) -> None:
        # Docker counts the grace period in whole seconds; rounding up never cuts it short.
        with _errors("stop the container", container_id):
            await self._docker.containers.container(container_id).stop(t=math.ceil(max(grace_seconds, 0)))

    async def remove(self, container_id: str) -> None:
        try:
            with _errors("remove the container", container_id):
                await self._docker.containers.container(container_id).delete(force=True)
        except ContainerNotFound:
            pass

    async def inspect(self, container_id: str) -> ContainerInfo:
        with _errors("inspect the container", container_id):
            return _info(await self._docker.containers.container(container_id).show())

    async def containers(self, node: str) -> list[ContainerInfo]:
        with _errors("list containers"):
            listed = await self._docker.containers.list(all=True, filters={"label": [f"{LABEL_NODE}={node}"]})
        apps = [c.id for c in listed if LABEL_SANDBOX not in (c._container.get("Labels") or {})]
        infos = await all_of([self._inspect_if_there(container_id) for container_id in apps])
        return [info for info in infos if info is not None]

    # -- sandboxes

    async def start_sandbox(self, spec: SandboxSpec) -> Sandbox:
        name = sandbox_name(spec)
        netns = names.netns(spec.pod_uid)
        for found in await self._sandboxes(spec.node, f"{LABEL_POD_UID}={spec.pod_uid}"):
            if found.running:
                await self._name_netns(found.id, netns)
                return found
            await self.remove_sandbox(found)  # exited (an engine restart): made again
        image = await self._sandbox_image()
        with _errors(f"create sandbox {name}"):
            container = await self._docker.containers.create(sandbox_config(spec, image), name=name)
        try:
            with _errors(f"start sandbox {name}"):
                await container.start()
            await self._name_netns(container.id, netns)
        except BaseException:
            await asyncio.shield(self._discard(container.id))
            raise
        return Sandbox(id=container.id, pod_uid=spec.pod_uid, netns=netns)

    async def _name_netns(self, container_id: str, netns: str) -> None:
        """Name the sandbox's network namespace in /run/netns (the engine must be on this host)."""
        with _errors("inspect the sandbox", container_id):
            data = await self._docker.containers.container(container_id).show()
        pid = int(data["State"].get("Pid") or 0)
        if pid <= 0:
            raise RuntimeFailure(f"sandbox {container_id[:12]} has no process")
        await asyncio.to_thread(links.attach_netns, netns, pid)

    async def _sandbox_image(self) -> str:
        """The sandbox image, imported once from the host's static busybox (no registry needed)."""
        if await self._image_id(SANDBOX_IMAGE) is not None:
            return SANDBOX_IMAGE
        try:
            tar = await asyncio.to_thread(sandbox_image_tar)
        except NoBusybox as err:
            raise RuntimeFailure(str(err)) from None
        repo, _, tag = SANDBOX_IMAGE.partition(":")
        params = {"fromSrc": "-", "repo": repo, "tag": tag}
        headers = {"Content-Type": "application/x-tar"}
        with _errors("import the sandbox image"):
            query = self._docker._query("images/create", "POST", params=params, data=tar, headers=headers)
            async with query as response:
                progress = await response.text()
        if await self._image_id(SANDBOX_IMAGE) is None:
            raise RuntimeFailure(f"docker: cannot import the sandbox image: {progress.strip()[-300:]}")
        return SANDBOX_IMAGE

    async def remove_sandbox(self, sandbox: Sandbox) -> None:
        await asyncio.to_thread(links.remove_netns, sandbox.netns)
        await self.remove(sandbox.id)

    async def sandboxes(self, node: str) -> list[Sandbox]:
        return await self._sandboxes(node)

    async def _sandboxes(self, node: str, *labels: str) -> list[Sandbox]:
        """The node's sandboxes that carry `labels` too (the engine filters: one pod's at start)."""
        wanted = [f"{LABEL_NODE}={node}", f"{LABEL_SANDBOX}=true", *labels]
        with _errors("list sandboxes"):
            listed = await self._docker.containers.list(all=True, filters={"label": wanted})
        found = []
        for container in listed:
            uid = (container._container.get("Labels") or {}).get(LABEL_POD_UID, "")
            running = container._container.get("State") == "running"
            found.append(Sandbox(id=container.id, pod_uid=uid, netns=names.netns(uid), running=running))
        return found

    async def _inspect_if_there(self, container_id: str) -> ContainerInfo | None:
        try:
            return await self.inspect(container_id)
        except ContainerNotFound:
            return None  # removed since it was listed

    async def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
    ) -> AsyncIterator[bytes]:
        # Read here rather than through aiodocker's `log`, which decodes the output as UTF-8
        # (dropping what is not) and leaks the connection of a follow given up (see `_stream`).
        # The engine ends a followed stream by itself when the container exits.
        params: dict[str, Any] = {"stdout": True, "stderr": True, "follow": follow}
        params["tail"] = "all" if tail is None else str(max(tail, 0))
        if since is not None:
            params["since"] = f"{since.timestamp():.9f}"
        lines = LineBuffer()
        with _errors("read the logs", container_id):
            async with self._stream(f"containers/{container_id}/logs", params=params) as response:
                while (frame := await _frame(response.content)) is not None:
                    if ready := lines.feed(frame):
                        yield ready
        if rest := lines.flush():
            yield rest

    async def exec(self, container_id: str, command: list[str]) -> ExecResult:
        if not command:
            raise StartError("exec needs a command")
        container = self._docker.containers.container(container_id)
        with _errors("exec", container_id):
            try:
                execution = await container.exec(command, stdout=True, stderr=True, tty=False)
            except DockerError as err:
                if err.status == 409:  # not running
                    raise StartError(f"cannot exec in container {container_id[:12]}: {err.message}") from err
                raise
        output = bytearray()
        try:
            with _errors("exec", container_id):
                async with execution.start(detach=False) as stream:
                    while (message := await stream.read_out()) is not None:
                        output += message.data
                details = await self._finished(execution)
        except asyncio.CancelledError:
            await asyncio.shield(self._kill_exec(execution, container_id))
            raise
        code = int(details["ExitCode"])
        if details.get("Pid") == 0 and code in (126, 127):  # the command never ran
            raise StartError(f"cannot exec {command[0]!r}: {output.decode(errors='replace').strip()}")
        return ExecResult(code, bytes(output))

    async def _finished(self, execution: Exec) -> dict[str, Any]:
        """The exec's details once the engine has recorded its exit code, a moment after the output ends."""
        for _ in range(100):
            details = await execution.inspect()
            if not details["Running"] and details["ExitCode"] is not None:
                return details
            await asyncio.sleep(0.01)
        raise RuntimeFailure(f"docker: exec {execution.id[:12]} did not report an exit code")

    async def _kill_exec(self, execution: Exec, container_id: str) -> None:
        """Kill an exec whose caller gave up: Docker has no API for it and keeps it running.

        Possible only when the engine runs on this host, in our pid namespace: the exec's pid is
        then ours too, and its cgroup names the container (which guards against a reused pid).
        """
        try:
            details = await execution.inspect()
        except DockerError as err:
            log.warning("cannot inspect abandoned exec %s: %s", execution.id[:12], err.message)
            return
        pid = int(details.get("Pid") or 0)
        if not details.get("Running") or pid <= 0:
            return
        try:
            if not self._local:
                raise PermissionError("the engine is not on this host")
            _kill_local(pid, container_id)
        except ProcessLookupError:
            pass
        except OSError as err:
            log.warning(
                "abandoned exec %s (pid %d) in container %s keeps running: %s",
                execution.id[:12],
                pid,
                container_id[:12],
                err,
            )

    async def stats(self, container_id: str) -> ContainerStats:
        """One sample. Memory is the working set, usage less inactive file cache, as the kubelet
        reports it. `one-shot` (API 1.41) skips the engine's second sample for a CPU delta we do
        not use (we keep our own), which halves the wait: about a second, however many
        containers are asked at once."""
        with _errors("read the stats", container_id):
            sample = await self._docker._query_json(
                f"containers/{container_id}/stats", params={"stream": "0", "one-shot": "1"}
            )
        if not isinstance(sample, dict):
            sample = {}
        cpu = int(sample.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage") or 0)
        memory = sample.get("memory_stats", {})
        details = memory.get("stats", {})
        inactive = details.get("total_inactive_file", details.get("inactive_file", 0))
        return ContainerStats(
            cpu_nanos=cpu,
            memory_bytes=max(int(memory.get("usage") or 0) - inactive, 0),
            read_at=_timestamp(sample.get("read")),
        )

    async def close(self) -> None:
        await self._docker.close()


async def _frame(content: aiohttp.StreamReader) -> bytes | None:
    """The payload of the next frame of a non-TTY container's output, None at the end.

    Each frame is an 8-byte header (stream: 1 stdout, 2 stderr; three zero bytes; the payload's
    length, big-endian) and the payload. Containers made here never have a TTY.
    """
    try:
        header = await content.readexactly(8)
        return await content.readexactly(int.from_bytes(header[4:8], "big"))
    except asyncio.IncompleteReadError:
        return None


def _timestamp(value: object) -> datetime | None:
    """An engine timestamp (RFC 3339, nanoseconds); None for Docker's zero time or junk."""
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    return stamp if stamp.year > 1970 else None


def _kill_local(pid: int, container_id: str) -> None:
    if container_id not in Path(f"/proc/{pid}/cgroup").read_text():
        raise PermissionError(f"pid {pid} is not a process of container {container_id[:12]} here")
    if os.getpgid(pid) == pid:  # a process group of its own: take what it started too
        os.killpg(pid, signal.SIGKILL)
    else:
        os.kill(pid, signal.SIGKILL)


def _info(data: dict[str, Any]) -> ContainerInfo:
    config, state = data["Config"], data["State"]
    labels: dict[str, str] = config.get("Labels") or {}
    status = _STATUS.get(state["Status"], "exited")  # restarting, removing, dead: not running
    started_at = _time(state.get("StartedAt"))
    finished_at = _time(state.get("FinishedAt")) if status == "exited" else None
    if started_at and finished_at and finished_at < started_at:
        # The engine records StartedAt only once start returns: a command that exits at once
        # can finish "before" it started. Nothing ran for less than no time.
        finished_at = started_at
    return ContainerInfo(
        id=data["Id"],
        **owner(labels),
        status=status,
        image=config.get("Image", ""),
        image_id=data.get("Image", ""),
        exit_code=int(state["ExitCode"]) if status == "exited" else None,
        started_at=started_at,
        finished_at=finished_at,
        oom_killed=bool(state.get("OOMKilled")),
        error=state.get("Error") or "",
    )


def _time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 times (nanoseconds, Z) as aware datetimes; its zero time as None."""
    if not value or value == _NEVER:
        return None
    return datetime.fromisoformat(value)
