import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import msgspec
import pytest

from bus.resources.pod import (
    Container,
    ExecAction,
    HTTPGetAction,
    HTTPHeader,
    Probe,
    TCPSocketAction,
)
from nodeagent.probes import (
    ProbeKind,
    Prober,
    ProbeState,
    failure_message,
    host_ports,
    probes_of,
    resolve_port,
    run_probe,
    should_run,
)
from nodeagent.runtime.base import ExecResult, PortBinding, StartError

LIVE, READY, START = ProbeKind.LIVENESS, ProbeKind.READINESS, ProbeKind.STARTUP
HOST = "127.0.0.1"


def exec_probe(command: str = "check", /, **thresholds: int) -> Probe:
    return msgspec.structs.replace(Probe(exec=ExecAction(command=[command])), **thresholds)


def container(**probes: Probe) -> Container:
    return msgspec.structs.replace(Container(name="web", image="web"), **probes)


# -- the state machine


@pytest.mark.parametrize(
    ("kind", "initial"),
    [(LIVE, True), (READY, False), (START, False)],
)
def test_initial_verdict(kind: ProbeKind, initial: bool) -> None:
    assert ProbeState(kind, exec_probe()).ok is initial


@pytest.mark.parametrize(
    ("kind", "thresholds", "results", "verdicts", "changes"),
    [
        # readiness: one success makes it ready, three failures in a row unready
        (READY, {}, [True], [True], [True]),
        (READY, {}, [False, False, False], [False, False, False], [False, False, False]),
        (READY, {}, [True, False, False, False], [True, True, True, False], [True, False, False, True]),
        (READY, {}, [True, False, False, True, False, False], [True] * 6, [True] + [False] * 5),
        (
            READY,
            {"success_threshold": 2},
            [True, False, True, True, True],
            [False, False, False, True, True],
            [False, False, False, True, False],
        ),
        (READY, {"failure_threshold": 1}, [True, False, True], [True, False, True], [True, True, True]),
        # liveness: alive until failureThreshold failures in a row
        (LIVE, {}, [False, False], [True, True], [False, False]),
        (LIVE, {}, [False, False, False], [True, True, False], [False, False, True]),
        (LIVE, {}, [False, False, True, False, False], [True] * 5, [False] * 5),
        (LIVE, {"failure_threshold": 1}, [True, False], [True, False], [False, True]),
        # startup: not started until it succeeds; failing is a change too (from Unknown)
        (START, {}, [True], [True], [True]),
        (START, {}, [False, False, True], [False, False, True], [False, False, True]),
        (START, {}, [False, False, False], [False] * 3, [False, False, True]),
        (START, {"failure_threshold": 2}, [False, False, False], [False] * 3, [False, True, False]),
    ],
)
def test_thresholds(
    kind: ProbeKind,
    thresholds: dict[str, int],
    results: list[bool],
    verdicts: list[bool],
    changes: list[bool],
) -> None:
    state = ProbeState(kind, exec_probe(**thresholds))
    seen_changes, seen_verdicts = [], []
    for result in results:
        seen_changes.append(state.record(result))
        seen_verdicts.append(state.ok)
    assert (seen_verdicts, seen_changes) == (verdicts, changes)


def test_reset_is_a_new_container() -> None:
    state = ProbeState(LIVE, exec_probe(failure_threshold=2))
    state.record(False)
    assert state.record(False) and not state.ok
    state.reset()
    assert state.ok
    assert not state.record(False)  # the run of failures starts over


@pytest.mark.parametrize(
    ("kind", "started", "runs"),
    [(START, False, True), (START, True, False), (LIVE, False, False), (LIVE, True, True)]
    + [(READY, False, False), (READY, True, True)],
)
def test_startup_gating(kind: ProbeKind, started: bool, runs: bool) -> None:
    assert should_run(kind, started=started) is runs


@pytest.mark.parametrize(
    ("probes", "kinds"),
    [
        ({}, []),
        ({"readiness_probe": exec_probe()}, [READY]),
        ({"liveness_probe": exec_probe(), "startup_probe": exec_probe()}, [START, LIVE]),
    ],
)
def test_probes_of(probes: dict[str, Probe], kinds: list[ProbeKind]) -> None:
    assert list(probes_of(container(**probes))) == kinds


# -- ports


BINDINGS = [PortBinding(8080, 31001, name="http"), PortBinding(9090, 31002)]


def test_host_ports() -> None:
    assert host_ports(BINDINGS) == {8080: 31001, "http": 31001, 9090: 31002}


@pytest.mark.parametrize(
    ("port", "host_port"),
    [(8080, 31001), ("http", 31001), (9090, 31002), (7000, 7000)],
)
def test_resolve_port(port: int | str, host_port: int) -> None:
    assert resolve_port(port, host_ports(BINDINGS)) == host_port


# -- actions


class FakeExec:
    """Exit codes per command, in turn; the last one repeats. `hang` never answers."""

    def __init__(self, script: dict[str, list[int]]) -> None:
        self.script = script
        self.calls: list[list[str]] = []

    async def exec(self, container_id: str, command: list[str]) -> ExecResult:
        self.calls.append(command)
        name = command[0]
        if name == "hang":
            await asyncio.Event().wait()
        if name == "missing":
            raise StartError('exec: "missing": executable file not found in $PATH')
        codes = self.script[name]
        code = codes.pop(0) if len(codes) > 1 else codes[0]
        return ExecResult(exit_code=code, output=b"not healthy\n" if code else b"ok\n")


async def probe_once(
    probe: Probe, runtime: FakeExec | None = None, limit: float | None = None
) -> tuple[bool, str]:
    return await run_probe(
        probe,
        host=HOST,
        ports=host_ports(BINDINGS),
        runtime=runtime or FakeExec({}),
        container_id="c1",
        limit=limit,
    )


@pytest.mark.parametrize(
    ("command", "codes", "expected"),
    [
        ("check", [0], (True, "")),
        ("check", [1], (False, "not healthy")),
        ("hang", [0], (False, 'command "hang" timed out')),
        ("missing", [0], (False, 'exec: "missing": executable file not found in $PATH')),
    ],
)
async def test_exec_probe(command: str, codes: list[int], expected: tuple[bool, str]) -> None:
    runtime = FakeExec({command: codes})
    assert await probe_once(exec_probe(command), runtime, limit=0.05) == expected
    assert runtime.calls == [[command]]


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], object]


@pytest.fixture
async def http_server() -> AsyncIterator[tuple[int, list[bytes], list[int]]]:
    """Answers each request with the next status of `statuses` (the last repeats); 0: never answers."""
    requests: list[bytes] = []
    statuses: list[int] = [200]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        requests.append(request)
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        if status == 0:
            await reader.read()  # until the client gives up
        else:
            writer.write(f"HTTP/1.1 {status} Whatever\r\nContent-Length: 2\r\n\r\nhi".encode())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, requests, statuses


def closed_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def test_http_probe_statuses(http_server: tuple[int, list[bytes], list[int]]) -> None:
    port, requests, statuses = http_server
    statuses[:] = [200, 302, 500]
    probe = Probe(http_get=HTTPGetAction(port=8080, path="healthz"))
    results = [await run_probe(probe, host=HOST, ports={8080: port}, runtime=FakeExec({}), container_id="c")]
    results += [await run_probe(probe, host=HOST, ports={8080: port}, runtime=FakeExec({}), container_id="c")]
    results += [await run_probe(probe, host=HOST, ports={8080: port}, runtime=FakeExec({}), container_id="c")]
    assert results == [(True, ""), (True, ""), (False, "HTTP probe failed with statuscode: 500")]
    assert requests[0].startswith(b"GET /healthz HTTP/1.1\r\n")
    assert f"Host: {HOST}:{port}\r\n".encode() in requests[0]
    assert b"Connection: close\r\n" in requests[0]


async def test_http_probe_headers(http_server: tuple[int, list[bytes], list[int]]) -> None:
    port, requests, _ = http_server
    headers = [HTTPHeader(name="X-Probe", value="yes"), HTTPHeader(name="host", value="web.local")]
    probe = Probe(http_get=HTTPGetAction(port="http", path="/ready", http_headers=headers))
    assert await run_probe(
        probe, host=HOST, ports={"http": port}, runtime=FakeExec({}), container_id="c"
    ) == (
        True,
        "",
    )
    lines = requests[0].decode().split("\r\n")
    assert "X-Probe: yes" in lines and "host: web.local" in lines
    assert not any(line.startswith("Host:") for line in lines)


async def test_http_probe_never_answers(http_server: tuple[int, list[bytes], list[int]]) -> None:
    port, _, statuses = http_server
    statuses[:] = [0]
    probe = Probe(http_get=HTTPGetAction(port=port, path="/healthz"))
    ok, message = await probe_once(probe, limit=0.1)
    assert not ok
    assert message == (
        f'Get "http://{HOST}:{port}/healthz": context deadline exceeded '
        "(Client.Timeout exceeded while awaiting headers)"
    )


async def test_http_probe_refused() -> None:
    port = closed_port()
    ok, message = await probe_once(Probe(http_get=HTTPGetAction(port=port, path="/healthz")))
    assert not ok
    assert (
        message == f'Get "http://{HOST}:{port}/healthz": dial tcp {HOST}:{port}: connect: connection refused'
    )


async def test_http_probe_goes_to_the_allocated_host_port(
    http_server: tuple[int, list[bytes], list[int]],
) -> None:
    port, requests, _ = http_server
    probe = Probe(http_get=HTTPGetAction(port=8080))
    ok, _ = await run_probe(probe, host=HOST, ports={8080: port}, runtime=FakeExec({}), container_id="c")
    assert ok and len(requests) == 1


async def test_http_probe_host_overrides(http_server: tuple[int, list[bytes], list[int]]) -> None:
    port, requests, _ = http_server
    probe = Probe(http_get=HTTPGetAction(port=port, host=HOST))
    ok, _ = await run_probe(probe, host="192.0.2.1", ports={}, runtime=FakeExec({}), container_id="c")
    assert ok and len(requests) == 1


async def test_http_probe_malformed_answer() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        ok, message = await probe_once(Probe(http_get=HTTPGetAction(port=port)))
    assert not ok
    assert message.startswith(f'Get "http://{HOST}:{port}/": net/http: HTTP/1.x transport connection broken')


async def test_tcp_probe() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), HOST, 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        assert await probe_once(Probe(tcp_socket=TCPSocketAction(port=port))) == (True, "")
    refused = closed_port()
    assert await probe_once(Probe(tcp_socket=TCPSocketAction(port=refused))) == (
        False,
        f"dial tcp {HOST}:{refused}: connect: connection refused",
    )


@pytest.mark.parametrize(
    "probe",
    [
        Probe(tcp_socket=TCPSocketAction(port="metrics")),
        Probe(http_get=HTTPGetAction(port="metrics")),
    ],
)
async def test_unknown_port_name(probe: Probe) -> None:
    ok, message = await probe_once(probe)
    assert not ok
    assert message == 'port "metrics" not found among the container\'s named ports (http)'


async def test_probe_without_action() -> None:
    assert await probe_once(Probe()) == (False, "the probe has no action (exec, httpGet or tcpSocket)")


@pytest.mark.parametrize(
    ("kind", "detail", "message"),
    [
        (
            LIVE,
            "HTTP probe failed with statuscode: 500",
            "Liveness probe failed: HTTP probe failed with statuscode: 500",
        ),
        (READY, "x", "Readiness probe failed: x"),
        (START, "x", "Startup probe failed: x"),
    ],
)
def test_failure_message(kind: ProbeKind, detail: str, message: str) -> None:
    assert failure_message(kind, detail) == message


# -- the prober


class FakeTime:
    """A clock that moves only when slept on; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


Change = tuple[ProbeKind, bool, str]


async def run_until(prober: Prober, count: int) -> list[Change]:
    """Run the prober until `count` changes are reported (or it ends); the changes."""
    changes: list[Change] = []
    enough = asyncio.Event()

    def on_change(kind: ProbeKind, ok: bool, message: str) -> None:
        changes.append((kind, ok, message))
        if len(changes) >= count:
            enough.set()

    async with asyncio.timeout(5):
        task = asyncio.create_task(prober.run(on_change))
        waiter = asyncio.create_task(enough.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        for t in (task, waiter):
            t.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
    return changes


def prober(runtime: FakeExec, time: FakeTime, **probes: Probe) -> Prober:
    return Prober(
        container(**probes),
        container_id="c1",
        runtime=runtime,
        host=HOST,
        ports={},
        clock=time.clock,
        sleep=time.sleep,
    )


@pytest.mark.parametrize(
    ("probes", "script", "expected", "count"),
    [
        # readiness: unready, ready, unready again; reported only on change
        (
            {"readiness_probe": exec_probe("ready")},
            {"ready": [1, 0, 0, 1, 1, 1, 0]},
            [(READY, True, ""), (READY, False, "Readiness probe failed: not healthy"), (READY, True, "")],
            3,
        ),
        # liveness: reported once dead, and its loop ends
        (
            {"liveness_probe": exec_probe("live")},
            {"live": [0, 1, 1, 1]},
            [(LIVE, False, "Liveness probe failed: not healthy")],
            2,
        ),
        # startup gates liveness: it is not run until startup succeeds
        (
            {"startup_probe": exec_probe("start"), "liveness_probe": exec_probe("live")},
            {"start": [1, 1, 0], "live": [1, 1, 1]},
            [(START, True, ""), (LIVE, False, "Liveness probe failed: not healthy")],
            2,
        ),
        # a startup probe that never succeeds is reported failed, and nothing else runs
        (
            {"startup_probe": exec_probe("start"), "readiness_probe": exec_probe("ready")},
            {"start": [1], "ready": [0]},
            [(START, False, "Startup probe failed: not healthy")],
            2,
        ),
    ],
)
async def test_prober_reports_changes(
    probes: dict[str, Probe], script: dict[str, list[int]], expected: list[Change], count: int
) -> None:
    runtime = FakeExec(script)
    changes = await run_until(prober(runtime, FakeTime(), **probes), count)
    assert changes == expected
    if "startup_probe" in probes:
        first_other = next((i for i, c in enumerate(runtime.calls) if c != ["start"]), len(runtime.calls))
        assert all(c == ["start"] for c in runtime.calls[:first_other])
        assert ["start"] not in runtime.calls[first_other:]


async def test_prober_timing() -> None:
    time = FakeTime()
    probe = Probe(exec=ExecAction(command=["live"]), initial_delay_seconds=15, period_seconds=5)
    runtime = FakeExec({"live": [0, 0, 1, 1, 1]})
    p = Prober(
        Container(name="web", image="web", liveness_probe=probe),
        container_id="c1",
        runtime=runtime,
        host=HOST,
        ports={},
        ran_for=10,
        clock=time.clock,
        sleep=time.sleep,
    )
    assert await run_until(p, 1) == [(LIVE, False, "Liveness probe failed: not healthy")]
    # 5 s of the initial delay were left (the container ran 10 s already), then every period
    assert time.sleeps == [5, 5, 5, 5, 5]
    assert len(runtime.calls) == 5


async def test_an_adopted_container_keeps_its_verdicts() -> None:
    """After an agent restart: a container found ready stays ready until its probe fails (then
    the change is reported), and a startup probe that had passed is not run again."""
    runtime = FakeExec({"ready": [1, 1, 1], "start": [1], "live": [0, 0, 0]})
    time = FakeTime()
    adopted = Prober(
        container(
            readiness_probe=exec_probe("ready"),
            startup_probe=exec_probe("start"),
            liveness_probe=exec_probe("live"),
        ),
        container_id="c1",
        runtime=runtime,
        host=HOST,
        ports={},
        ran_for=60,
        carried={READY: True, START: True},
        clock=time.clock,
        sleep=time.sleep,
    )
    assert await run_until(adopted, 1) == [(READY, False, "Readiness probe failed: not healthy")]
    assert ["start"] not in runtime.calls
