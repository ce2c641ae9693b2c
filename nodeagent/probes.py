"""Liveness, readiness and startup probes, with Kubernetes' semantics.

Three layers, so that the rules are tested without I/O and the I/O without timing:

- `ProbeState`: one probe of one container as a state machine. Results count only in runs of
  `successThreshold`/`failureThreshold` consecutive equal results, so one slow answer neither
  takes a pod out of its Services nor gets its container killed.
- `run_probe`: one attempt (exec, HTTP GET, TCP connect), bounded by `timeoutSeconds`, worded
  as the kubelet words its events, so `steer describe` reads like `kubectl describe`.
- `Prober`: the loops of one container's probes, owned by the pod worker's TaskGroup. It
  reports only changes of verdict: the worker restarts on a failed liveness or startup probe
  and writes readiness into the pod status, and writes are to happen only when something changed.

Containers share the host's network on allocated host ports, so a probe of containerPort 8080
goes to the host port allocated for 8080, never to 8080 itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from enum import StrEnum
from typing import Protocol

from bus.resources.pod import Container, HTTPGetAction, IntOrString, Probe
from nodeagent.runtime.base import ExecResult, PortBinding, RuntimeFailure

log = logging.getLogger(__name__)

_MAX_HEADER_LINES = 100


class ProbeKind(StrEnum):
    LIVENESS = "Liveness"
    READINESS = "Readiness"
    STARTUP = "Startup"


OnChange = Callable[[ProbeKind, bool, str], None]
Ports = Mapping[str | int, int]


class Execer(Protocol):
    """The part of the Runtime an exec probe needs."""

    async def exec(self, container_id: str, command: list[str]) -> ExecResult: ...


class ProbeFailed(Exception):
    """An attempt that could not even be made (no action, unknown port name): a failed result."""


# Kubernetes: readiness starts as Failure, liveness as Success, startup as Unknown. A startup
# probe's verdict reads False (not started) but is unsettled, so that reaching its
# failureThreshold is a change to report (and the container is restarted).
_INITIAL: dict[ProbeKind, tuple[bool, bool | None]] = {
    ProbeKind.LIVENESS: (True, True),
    ProbeKind.READINESS: (False, False),
    ProbeKind.STARTUP: (False, None),
}


class ProbeState:
    """The verdict of one probe of one container, from the results fed to `record`."""

    def __init__(self, kind: ProbeKind, probe: Probe) -> None:
        self.kind = kind
        self.probe = probe
        self.reset()

    def reset(self) -> None:
        """Back to the initial verdict, as for a new container."""
        self.ok, self._settled = _INITIAL[self.kind]
        self._last: bool | None = None
        self._run = 0

    def carry(self, ok: bool) -> None:
        """Take a verdict reached before (by a previous agent), as settled."""
        self.ok = self._settled = ok

    @property
    def just_failed(self) -> bool:
        """Whether the last result completed a run of exactly failureThreshold failures."""
        return self._last is False and self._run == self.probe.failure_threshold

    def record(self, success: bool) -> bool:
        """Feed one result; whether the verdict changed (kubelet `prober/worker.go`, doProbe)."""
        if success == self._last:
            self._run += 1
        else:
            self._last, self._run = success, 1
        threshold = self.probe.success_threshold if success else self.probe.failure_threshold
        if self._run < threshold or success == self._settled:
            return False
        self.ok = self._settled = success
        return True


def should_run(kind: ProbeKind, *, started: bool) -> bool:
    """A startup probe runs until the container has started; the others only after that."""
    return not started if kind is ProbeKind.STARTUP else started


def probes_of(container: Container) -> dict[ProbeKind, Probe]:
    declared = {
        ProbeKind.STARTUP: container.startup_probe,
        ProbeKind.LIVENESS: container.liveness_probe,
        ProbeKind.READINESS: container.readiness_probe,
    }
    return {kind: probe for kind, probe in declared.items() if probe is not None}


def host_ports(bindings: Iterable[PortBinding]) -> dict[str | int, int]:
    """The `ports` of `run_probe`: each declared containerPort, and its name, to its host port."""
    ports: dict[str | int, int] = {}
    for binding in bindings:
        ports[binding.container_port] = binding.host_port
        if binding.name:
            ports[binding.name] = binding.host_port
    return ports


def resolve_port(port: IntOrString, ports: Ports) -> int:
    """The host port to probe. A number not declared is used as it is (the container may bind it)."""
    if isinstance(port, int):
        return ports.get(port, port)
    if port in ports:
        return ports[port]
    known = ", ".join(str(p) for p in ports if isinstance(p, str)) or "none"
    raise ProbeFailed(f'port "{port}" not found among the container\'s named ports ({known})')


def failure_message(kind: ProbeKind, detail: str) -> str:
    return f"{kind} probe failed: {detail}"


async def run_probe(
    probe: Probe,
    *,
    host: str,
    ports: Ports,
    runtime: Execer,
    container_id: str,
    limit: float | None = None,
) -> tuple[bool, str]:
    """One attempt: (success, why it failed), within `limit` seconds (default: timeoutSeconds)."""
    seconds = float(probe.timeout_seconds) if limit is None else limit
    try:
        if probe.exec is not None:
            return await _exec(runtime, container_id, probe.exec.command, seconds)
        if probe.http_get is not None:
            return await _http_get(probe.http_get, host=host, ports=ports, limit=seconds)
        if probe.tcp_socket is not None:
            port = resolve_port(probe.tcp_socket.port, ports)
            return await _tcp(probe.tcp_socket.host or host, port, seconds)
    except ProbeFailed as e:
        return False, str(e)
    return False, "the probe has no action (exec, httpGet or tcpSocket)"


def _go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _dial_error(host: str, port: int, error: OSError) -> str:
    """Worded as Go's net.Dial errors are."""
    if isinstance(error, socket.gaierror):
        return f"dial tcp: lookup {host}: no such host"
    reason = os.strerror(error.errno).lower() if error.errno else str(error)
    return f"dial tcp {_host_port(host, port)}: connect: {reason}"


async def _exec(runtime: Execer, container_id: str, command: list[str], limit: float) -> tuple[bool, str]:
    try:
        async with asyncio.timeout(limit):
            result = await runtime.exec(container_id, command)
    except TimeoutError:
        return False, f"command {_go_quote(' '.join(command))} timed out"
    except RuntimeFailure as e:
        return False, e.message
    if result.exit_code == 0:
        return True, ""
    output = result.output.decode(errors="replace").strip()
    return False, output or f"command {_go_quote(' '.join(command))} exited with {result.exit_code}"


async def _tcp(host: str, port: int, limit: float) -> tuple[bool, str]:
    try:
        async with asyncio.timeout(limit):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return False, f"dial tcp {_host_port(host, port)}: i/o timeout"
    except OSError as e:
        return False, _dial_error(host, port, e)
    await _close(writer)
    return True, ""


async def _close(writer: asyncio.StreamWriter) -> None:
    if writer.get_extra_info("sslcontext") is not None:
        writer.transport.abort()  # no TLS shutdown handshake to wait for: the answer is in
    else:
        writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def _request(action: HTTPGetAction, host: str, port: int, path: str) -> bytes:
    """The request; the probe's headers replace the defaults of the same name (Host included)."""
    given = [(h.name, h.value) for h in action.http_headers]
    for name, value in given:
        if "\r" in name + value or "\n" in name + value:
            raise ProbeFailed(f"invalid HTTP header {name!r}: line breaks are not allowed")
    names = {name.lower() for name, _ in given}
    defaults = [("Host", _host_port(host, port)), ("User-Agent", "steersman-probe"), ("Accept", "*/*")]
    headers = [(k, v) for k, v in defaults if k.lower() not in names] + given
    headers = [(k, v) for k, v in headers if k.lower() != "connection"] + [("Connection", "close")]
    lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1", errors="replace")


async def _http_get(action: HTTPGetAction, *, host: str, ports: Ports, limit: float) -> tuple[bool, str]:
    """A GET with a minimal HTTP/1.1 client: only the status line matters, the body is never read."""
    host = action.host or host
    port = resolve_port(action.port, ports)
    path = action.path if action.path.startswith("/") else "/" + action.path
    url = f"{action.scheme.lower()}://{_host_port(host, port)}{path}"
    request = _request(action, host, port, path)
    try:
        async with asyncio.timeout(limit):
            status = await _fetch_status(host, port, request, tls=action.scheme == "HTTPS")
    except TimeoutError:
        return (
            False,
            f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)',
        )
    except ProbeFailed as e:
        return False, f'Get "{url}": {e}'
    if 200 <= status < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {status}"


async def _fetch_status(host: str, port: int, request: bytes, *, tls: bool) -> int:
    context: ssl.SSLContext | None = None
    if tls:  # as the kubelet does, HTTPS probes do not verify the certificate
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=context)
    except OSError as e:
        raise ProbeFailed(_dial_error(host, port, e)) from e
    try:
        writer.write(request)
        await writer.drain()
        line = await reader.readline()
        for _ in range(_MAX_HEADER_LINES):
            if (await reader.readline()).strip() == b"":
                break
    except ValueError as e:  # a line over the reader's limit
        raise ProbeFailed("net/http: response headers too long") from e
    except OSError as e:
        reason = os.strerror(e.errno).lower() if e.errno else str(e)
        raise ProbeFailed(f"read tcp {_host_port(host, port)}: {reason}") from e
    finally:
        await _close(writer)
    if not line:
        raise ProbeFailed("EOF")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        shown = line.decode("latin-1").rstrip("\r\n")
        raise ProbeFailed(
            f"net/http: HTTP/1.x transport connection broken: malformed HTTP response {shown!r}"
        )
    return int(parts[1])


class Prober:
    """The probe loops of one running container; `run` until cancelled (or a restart is due).

    Liveness and readiness wait for the startup probe, if any, to succeed; each probe waits
    `initialDelaySeconds` from the container's start, then probes every `periodSeconds`. After a
    liveness or startup failure its loop stops: the worker restarts the container and starts a
    new Prober for the new one (probing a dying container is pointless, and can confuse runtimes).
    """

    def __init__(
        self,
        container: Container,
        *,
        container_id: str,
        runtime: Execer,
        host: str,
        ports: Ports,
        ran_for: float = 0.0,
        carried: Mapping[ProbeKind, bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`ran_for`: how long the container has run already, and `carried`: the verdicts the
        probes had reached (both for a container adopted after an agent restart, whose readiness
        must not drop, nor its startup probe run again, just because the agent was away)."""
        self.container = container
        self.container_id = container_id
        self.runtime = runtime
        self.host = host
        self.ports = ports
        self.states = {kind: ProbeState(kind, probe) for kind, probe in probes_of(container).items()}
        for kind, ok in (carried or {}).items():
            if kind in self.states:
                self.states[kind].carry(ok)
        self._clock = clock
        self._sleep = sleep
        self._started_at = clock() - ran_for

    @property
    def started(self) -> bool:
        startup = self.states.get(ProbeKind.STARTUP)
        return startup is None or startup.ok

    async def run(self, on_change: OnChange) -> None:
        startup = self.states.get(ProbeKind.STARTUP)
        if startup is not None and not startup.ok:
            await self._loop(startup, on_change)
            if not startup.ok:
                return  # failed: the container is to be restarted, and probed no more
        async with asyncio.TaskGroup() as tg:
            for state in self.states.values():
                if should_run(state.kind, started=True):
                    tg.create_task(self._loop(state, on_change))

    async def _loop(self, state: ProbeState, on_change: OnChange) -> None:
        """Probe until the verdict settles for good: startup succeeded, or a restart is due."""
        next_at = self._started_at + state.probe.initial_delay_seconds
        while True:
            await self._sleep(max(0.0, next_at - self._clock()))
            next_at = self._clock() + state.probe.period_seconds
            ok, detail = await run_probe(
                state.probe,
                host=self.host,
                ports=self.ports,
                runtime=self.runtime,
                container_id=self.container_id,
            )
            if not ok:
                log.debug("%s: %s", self.container.name, failure_message(state.kind, detail))
            changed = state.record(ok)
            # A probe failing from the start never changes verdict (readiness begins False), but
            # reaching failureThreshold is still worth saying (the kubelet's Unhealthy event).
            if not changed and not state.just_failed:
                continue
            on_change(state.kind, state.ok, "" if state.ok else failure_message(state.kind, detail))
            if state.kind is ProbeKind.STARTUP or (state.kind is ProbeKind.LIVENESS and not state.ok):
                return
