"""Sending fuzzed input to real services and checking what the issue asks of every answer.

Invariants, per input:
- every reply is a documented shape: an object or list, or an error with the micro-service error
  headers and a Kubernetes `Status` body whose reason and code are in docs/protocol.md's table;
  `InternalError` (a bug), `Timeout` and `ServiceUnavailable` (a healthy plane never says so) and
  no reply at all are findings;
- a rejected request changes nothing stored (the target kind's objects in the target namespace,
  with their resourceVersions, are the same before and after);
- the `steer apply` path raises nothing but a `SteerError` (anything else is what the CLI would
  print as an internal error);
and, checked every so often and at the end, no service crashed, disconnected or stopped
answering (processes alive, no protocol error in nats-server's log, a plain request answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NATS

from bus import kinds, subjects
from bus.client import Client
from bus.codec import load_documents
from bus.errors import SteerError
from bus.protocol import ERROR_CODE_HEADER
from bus.resources import Event, Namespace
from bus.store import Store
from bus.streams import STREAM_HEADER
from cli import manifests as cli_manifests
from cli.apply import apply_manifest
from cli.session import Session
from tests.cluster import ControlPlane
from tests.fuzzing.fixtures import fixture_objects
from tests.fuzzing.payloads import Target

REPLY_TIMEOUT = 10.0
# Reasons and codes of docs/protocol.md (Errors).
DOCUMENTED = {
    "BadRequest": 400,
    "Forbidden": 403,
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "AlreadyExists": 409,
    "Conflict": 409,
    "Gone": 410,
    "RequestEntityTooLarge": 413,
    "Invalid": 422,
    "InternalError": 500,
    "ServiceUnavailable": 503,
    "Timeout": 504,
}
# Documented, but never the right answer from a healthy plane to a single request.
UNHEALTHY = frozenset({"InternalError", "ServiceUnavailable", "Timeout"})
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "status"})
FIXTURES = ("web", "db")


def shorten(value: Any, limit: int = 300) -> str:
    text = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


@dataclass
class Finding:
    target: str
    problem: str
    detail: str
    example: str

    def __str__(self) -> str:
        return f"[{self.target}] {self.problem}: {self.detail}\n    input: {self.example}"


@dataclass
class Findings:
    """What was tried and what broke, grouped by kind of failure (first example kept)."""

    tried: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: dict[tuple[str, str, str], Finding] = field(default_factory=dict)
    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def add(self, finding: Finding) -> None:
        key = (
            finding.target,
            finding.problem,
            finding.detail.splitlines()[0][:120] if finding.detail else "",
        )
        self.counts[key] += 1
        self.failures.setdefault(key, finding)

    def report(self) -> list[str]:
        return [f"{self.counts[key]}x {finding}" for key, finding in self.failures.items()]


class Harness:
    """Fuzz targets against one control plane: its API, and (when given) one node agent."""

    def __init__(self, plane: ControlPlane, nc: NATS, namespace: str, *, node: str = "") -> None:
        self.plane = plane
        self.nc = nc
        self.client = Client(nc, timeout=REPLY_TIMEOUT)
        self.store = Store(nc.jetstream(timeout=REPLY_TIMEOUT))
        self.namespace = namespace
        self.node = node
        self.findings = Findings()
        self.session = Session(nc, self.client)
        self._log_lines = 0

    # -- the plane around the inputs

    @classmethod
    async def start(cls, plane: ControlPlane, nc: NATS, *, node: str = "") -> Harness:
        client = Client(nc, timeout=REPLY_TIMEOUT)
        namespace = await ControlPlane.namespace(client)
        harness = cls(plane, nc, namespace, node=node)
        harness._log_lines = len(harness._server_errors())
        await harness.ensure_fixtures()
        return harness

    async def ensure_fixtures(self) -> None:
        """A few objects of every kind for get, patch, update and delete to find (again)."""
        for obj in fixture_objects(self.namespace, self.node):
            with contextlib.suppress(SteerError):
                await self.client.create(obj)

    def _server_errors(self) -> list[str]:
        text = (self.plane.tmp / "nats.log").read_text(errors="replace")
        return [line for line in text.splitlines() if "[ERR]" in line]

    async def health(self, *, revive: bool = False) -> list[Finding]:
        """Every service alive, connected, answering. With `revive`, a node agent that died is
        started again once reported (a long run goes on; the suite stops at the first)."""
        found: list[Finding] = []
        for proc in self.plane.services:
            if proc.poll() is not None:
                found.append(Finding("plane", "service exited", f"{proc.args} exited {proc.returncode}", ""))
        for agent in self.plane.agents:
            if agent.proc is not None and agent.proc.poll() is not None:
                why = _last_error(agent.log.read_text(errors="replace"))
                found.append(
                    Finding("plane", "node agent exited", f"exit code {agent.proc.returncode}: {why}", "")
                )
                if revive:
                    agent.start()  # so that the run goes on finding other things
                    await self._until_agent_answers()
        for line in self._server_errors()[self._log_lines :]:
            found.append(Finding("plane", "nats-server closed a connection", line.split("] ", 1)[-1], ""))
        self._log_lines = len(self._server_errors())
        try:
            await self.client.get(Namespace, self.namespace, "")
        except SteerError as err:
            found.append(Finding("plane", "API does not answer", err.message, ""))
        for finding in found:
            self.findings.add(finding)
        return found

    async def _until_agent_answers(self) -> None:
        probe = msgspec.json.encode({"namespace": "nowhere", "pod": "x", "command": ["true"]})
        async with asyncio.timeout(60):
            while True:
                try:
                    await self.nc.request(
                        subjects.node_stream(self.node, "exec", "nowhere"), probe, timeout=1
                    )
                    return
                except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                    await asyncio.sleep(0.2)  # the agent is starting: nothing to wait on but it

    async def snapshot(self, plural: str, namespace: str) -> dict[str, str] | None:
        """The target's objects and versions (None when there is no such kind or namespace token)."""
        info = kinds.BY_PLURAL.get(plural)
        if info is None or (info.namespaced and namespace in ("", subjects.ALL)):
            return None
        ns = namespace if info.namespaced else ""
        try:
            subjects.key(ns, "probe")
        except SteerError:
            return None
        items, _ = await self.store.list(info.type, ns or subjects.ALL)
        if not info.namespaced:
            items = [i for i in items if not i.metadata.namespace]
        return {
            f"{i.metadata.namespace}/{i.metadata.name}": i.metadata.resource_version
            for i in items
            # Lifecycle events are the API's own record of earlier, accepted requests.
            if not (isinstance(i, Event) and i.source.component == "steer-api")
        }

    # -- targets

    async def api(self, target: Target, body: bytes, *, name: str = "api") -> list[Finding]:
        """One raw request to an API subject (or a node-scoped one)."""
        self.findings.tried[name] += 1
        example = f"{target.subject[:120]} {shorten(body)}"
        write = target.verb in WRITE_VERBS
        before = await self.snapshot(target.plural, target.namespace) if write else None
        try:
            reply = await self.nc.request(target.subject, body, timeout=REPLY_TIMEOUT)
        except nats.errors.MaxPayloadError:
            self.findings.outcomes[f"{name}: refused by the client (over max_payload)"] += 1
            return []
        except nats.errors.NoRespondersError:
            if not target.served:
                self.findings.outcomes[f"{name}: no responders (not an API subject)"] += 1
                return []
            return self._found(name, "no responders", "nothing answers this subject", example)
        except nats.errors.TimeoutError:
            return self._found(name, "no reply", f"nothing within {REPLY_TIMEOUT:g}s", example)
        problems = self._check_reply(name, reply.headers, reply.data, example)
        failed = bool(reply.headers and ERROR_CODE_HEADER in reply.headers)
        if write and failed and before is not None:
            after = await self.snapshot(target.plural, target.namespace)
            if after != before:
                problems += self._found(
                    name, "store changed on a rejected request", _diff(before, after), example
                )
        return problems

    def _check_reply(
        self, name: str, headers: dict[str, str] | None, data: bytes, example: str
    ) -> list[Finding]:
        if headers and ERROR_CODE_HEADER in headers:
            try:
                status = msgspec.json.decode(data)
            except msgspec.DecodeError:
                return self._found(name, "error reply is not JSON", shorten(data), example)
            reason = status.get("reason") if isinstance(status, dict) else None
            if (
                not isinstance(status, dict)
                or status.get("kind") != "Status"
                or reason not in DOCUMENTED
                or status.get("code") != DOCUMENTED[reason]
                or not isinstance(status.get("message"), str)
                or headers.get(ERROR_CODE_HEADER) != str(DOCUMENTED[reason])
            ):
                return self._found(name, "undocumented error shape", shorten(data), example)
            self.findings.outcomes[f"{name}: {reason}"] += 1
            if reason in UNHEALTHY:
                return self._found(name, reason, status["message"], example)
            return []
        try:
            body = msgspec.json.decode(data)
        except msgspec.DecodeError:
            return self._found(name, "reply is not JSON", shorten(data), example)
        if not isinstance(body, dict) or "kind" not in body or "apiVersion" not in body:
            return self._found(name, "reply is neither an object nor a Status", shorten(data), example)
        self.findings.outcomes[f"{name}: ok"] += 1
        return []

    async def apply(self, text: str) -> list[Finding]:
        """The path `steer apply -f` takes, in process: read the documents, apply each."""
        self.findings.tried["apply"] += 1
        example = shorten(text, 600)
        try:
            bodies = load_documents(text, source="fuzz.yaml")
        except SteerError as err:
            self.findings.outcomes[f"apply: {err.reason} (reading)"] += 1
            return []
        except Exception as err:
            return self._found("apply", "crash reading the manifest", f"{type(err).__name__}: {err}", example)
        problems: list[Finding] = []
        for body in bodies:
            manifest = cli_manifests.Manifest("fuzz.yaml", body)
            target = _apply_target(body, self.namespace)
            before = await self.snapshot(*target) if target else None
            try:
                await apply_manifest(self.session, manifest, self.namespace)
                self.findings.outcomes["apply: ok"] += 1
            except SteerError as err:
                self.findings.outcomes[f"apply: {err.reason}"] += 1
                if err.reason in UNHEALTHY:
                    problems += self._found("apply", err.reason, err.message, example)
                if target and before is not None:
                    after = await self.snapshot(*target)
                    if after != before:
                        problems += self._found(
                            "apply", "store changed on a rejected request", _diff(before, after), example
                        )
            except Exception as err:
                problems += self._found("apply", "crash", f"{type(err).__name__}: {shorten(err)}", example)
        return problems

    async def logs(self, body: bytes) -> list[Finding]:
        """A logs request to the node agent: a stream that opens (or fails) and ends."""
        self.findings.tried["logs"] += 1
        example = shorten(body)
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        try:
            try:
                await self.nc.publish(
                    subjects.node_stream(self.node, "logs", self.namespace), body, reply=inbox
                )
            except nats.errors.MaxPayloadError:
                self.findings.outcomes["logs: refused by the client (over max_payload)"] += 1
                return []
            deadline = time.monotonic() + REPLY_TIMEOUT
            first = True
            while True:
                try:
                    msg = await sub.next_msg(timeout=max(0.1, deadline - time.monotonic()))
                except nats.errors.TimeoutError:
                    return self._found(
                        "logs", "no reply", f"stream did not end within {REPLY_TIMEOUT:g}s", example
                    )
                kind = (msg.headers or {}).get(STREAM_HEADER)
                if first and (msg.headers or {}).get("Status") == "503":
                    return self._found("logs", "no responders", "the node agent does not answer", example)
                if first and kind not in ("open", "error"):
                    return self._found("logs", "stream does not start with open or error", str(kind), example)
                first = False
                if kind == "open":  # stop at once: what matters is that it opened and will end
                    control = (msg.headers or {}).get("Steer-Control", "")
                    if control:
                        await self.nc.publish(control, b"cancel")
                elif kind == "error":
                    return self._check_reply("logs", {**(msg.headers or {})}, msg.data, example)
                elif kind == "end":
                    self.findings.outcomes["logs: ok"] += 1
                    return []
                elif kind != "data":
                    return self._found("logs", "unknown stream message", str(kind), example)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def exec(self, body: bytes) -> list[Finding]:
        self.findings.tried["exec"] += 1
        example = shorten(body)
        try:
            msg = await self.nc.request(
                subjects.node_stream(self.node, "exec", self.namespace), body, timeout=REPLY_TIMEOUT
            )
        except nats.errors.MaxPayloadError:
            self.findings.outcomes["exec: refused by the client (over max_payload)"] += 1
            return []
        except nats.errors.NoRespondersError:
            return self._found("exec", "no responders", "the node agent does not answer", example)
        except nats.errors.TimeoutError:
            return self._found("exec", "no reply", f"nothing within {REPLY_TIMEOUT:g}s", example)
        if (msg.headers or {}).get(STREAM_HEADER) == "error":
            return self._check_reply("exec", msg.headers, msg.data, example)
        try:
            reply = msgspec.json.decode(msg.data)
        except msgspec.DecodeError:
            return self._found("exec", "reply is not JSON", shorten(msg.data), example)
        if not isinstance(reply, dict) or "exitCode" not in reply:
            return self._found(
                "exec", "reply is neither an ExecReply nor an error", shorten(msg.data), example
            )
        self.findings.outcomes["exec: ok"] += 1
        return []

    def _found(self, target: str, problem: str, detail: str, example: str) -> list[Finding]:
        finding = Finding(target, problem, detail, example)
        self.findings.add(finding)
        return [finding]


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b.*")


def _last_error(log: str) -> str:
    """The last exception line of a log (inside an exception group's box too), if any."""
    for line in reversed(log.splitlines()):
        found = _EXCEPTION_LINE.match(line.strip(" |+-"))
        if found:
            return found.group(0)[:300]
    return ""


def _apply_target(body: dict[str, Any], namespace: str) -> tuple[str, str] | None:
    kind = body.get("kind")
    info = kinds.BY_KIND.get(kind) if isinstance(kind, str) else None
    if info is None:
        return None
    metadata = body.get("metadata")
    given = metadata.get("namespace") if isinstance(metadata, dict) else None
    return info.plural, (given if isinstance(given, str) and given else namespace)


def _diff(before: dict[str, str], after: dict[str, str] | None) -> str:
    after = after or {}
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return ", ".join(f"{k}: {before.get(k)} -> {after.get(k)}" for k in changed[:5])
