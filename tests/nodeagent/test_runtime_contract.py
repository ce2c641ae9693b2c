"""The Runtime contract, checked against each runtime: docker, process and fake.

Each test uses node names of its own, and the `runtime` fixture removes whatever was started for
them. The fake runtime runs no command: where a check needs real output it applies to docker and
process only, and tests that need a real process (env, working dir, a missing command, adoption)
skip the fake. Docker tests need an engine and the image `busybox:local` (scripts/docker-engine);
without them they are skipped, or fail when CI=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from nodeagent.runtime.base import (
    ContainerNotFound,
    ContainerSpec,
    ExecResult,
    ImageNeverPullError,
    ImagePullError,
    Runtime,
    RuntimeFailure,
    StartError,
)
from nodeagent.runtime.docker import DockerRuntime
from nodeagent.runtime.factory import make_runtime
from nodeagent.runtime.fake import FakeRuntime

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("STEER_TEST_IMAGE", "busybox:local")
# A registry on a closed loopback port: the pull fails at once and nothing leaves the machine.
MISSING_IMAGE = "127.0.0.1:9/steersman/missing:1"
MISSING_COMMAND = "steersman-no-such-command"
BOUND = 30.0  # seconds any one test may take, start to end
STARTED = b"started main attempt 0\n"  # all a hollow container logs


def other(node: str) -> str:
    return f"{node}-other"


@pytest.fixture
def node() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def root_dir(tmp_path: Path) -> Path:
    return tmp_path / "runtime"


@pytest.fixture(params=[pytest.param("docker", marks=pytest.mark.docker), "process", "fake"])
async def runtime(request: pytest.FixtureRequest, node: str, root_dir: Path) -> AsyncIterator[Runtime]:
    made = await _make(request.param, root_dir)
    try:
        yield made
    finally:
        async with asyncio.timeout(BOUND):
            for name in (node, other(node)):
                for info in await made.containers(name):
                    await made.remove(info.id)
        await made.close()


async def _make(kind: str, root_dir: Path) -> Runtime:
    if kind == "fake":
        return FakeRuntime(fail_images={MISSING_IMAGE})
    try:
        made = await make_runtime(kind, root_dir=root_dir)
    except RuntimeFailure as failure:
        _unavailable(f"{failure}")
    if kind == "docker":
        try:
            await made.ensure_image(IMAGE, "Never")
        except ImageNeverPullError:
            await made.close()
            _unavailable(f"image {IMAGE} is missing: run scripts/docker-engine")
    return made


def _unavailable(why: str) -> Any:
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


def spec(node: str, *command: str, **fields: Any) -> ContainerSpec:
    uid = uuid.uuid4().hex
    fields.setdefault("image", IMAGE)
    return ContainerSpec(
        node=node,
        pod_uid=uid,
        pod_namespace="contract",
        pod_name=f"pod-{uid[:8]}",
        name="main",
        command=list(command),
        **fields,
    )


def sh(node: str, script: str, **fields: Any) -> ContainerSpec:
    return spec(node, "sh", "-c", script, **fields)


def real(runtime: Runtime) -> bool:
    return runtime.name != "fake"


def skip_fake(runtime: Runtime) -> None:
    if not real(runtime):
        pytest.skip("a hollow container runs no process")


def follow(runtime: Runtime, container_id: str) -> contextlib.aclosing[AsyncGenerator[bytes, None]]:
    return contextlib.aclosing(cast(AsyncGenerator[bytes, None], runtime.logs(container_id, follow=True)))


async def output(runtime: Runtime, container_id: str, **options: Any) -> bytes:
    return b"".join([chunk async for chunk in runtime.logs(container_id, **options)])


async def until_logged(runtime: Runtime, container_id: str, *texts: bytes) -> bytes:
    """Follow the logs until every one of `texts` is in them (the fake: until its start line is)."""
    wanted = texts if real(runtime) else (STARTED,)
    seen = b""
    async with follow(runtime, container_id) as chunks:
        async for chunk in chunks:
            seen += chunk
            if all(text in seen for text in wanted):
                return seen
    raise AssertionError(f"the container exited without logging {wanted}: {seen!r}")


async def test_a_running_container_is_inspected_logged_and_listed(runtime: Runtime, node: str) -> None:
    started = sh(node, "echo hello; echo oops >&2; sleep 600")
    async with asyncio.timeout(BOUND):
        container_id = await runtime.start(started)
        await until_logged(runtime, container_id, b"hello\n", b"oops\n")
        info = await runtime.inspect(container_id)
        listed = await runtime.containers(node)
        last = await output(runtime, container_id, tail=1)
    assert (info.id, info.status, info.exit_code) == (container_id, "running", None)
    assert (info.pod_uid, info.pod_namespace, info.pod_name, info.name, info.attempt) == (
        started.pod_uid,
        "contract",
        started.pod_name,
        "main",
        0,
    )
    assert info.started_at is not None and info.started_at.tzinfo is not None
    assert [(c.id, c.pod_uid, c.pod_name, c.status) for c in listed] == [
        (container_id, started.pod_uid, started.pod_name, "running")
    ]
    assert last.count(b"\n") == 1 and last.endswith(b"\n")


async def test_the_exit_code_is_reported_by_wait_and_inspect(runtime: Runtime, node: str) -> None:
    async with asyncio.timeout(BOUND):
        container_id = await runtime.start(sh(node, "echo bye; exit 3"))
        assert await runtime.wait(container_id) == 3
        info = await runtime.inspect(container_id)
        assert await runtime.wait(container_id) == 3  # at once, now that it has exited
        with pytest.raises(StartError):
            await runtime.exec(container_id, ["true"])  # nothing to exec in
    assert (info.status, info.exit_code) == ("exited", 3)
    assert info.started_at is not None and info.finished_at is not None
    assert info.started_at <= info.finished_at


async def test_stop_lets_a_process_that_traps_term_exit_within_the_grace_period(
    runtime: Runtime, node: str
) -> None:
    grace = 10.0
    async with asyncio.timeout(BOUND):
        container_id = await runtime.start(sh(node, "trap 'exit 0' TERM; echo ready; sleep 600 & wait"))
        await until_logged(runtime, container_id, b"ready\n")
        begun = time.monotonic()
        await runtime.stop(container_id, grace)
        took = time.monotonic() - begun
        assert await runtime.wait(container_id) == 0
        info = await runtime.inspect(container_id)
    assert took < grace / 2
    assert (info.status, info.exit_code) == ("exited", 0)


async def test_stop_kills_a_process_that_ignores_term_after_the_grace_period(
    runtime: Runtime, node: str
) -> None:
    grace = 1.0
    async with asyncio.timeout(BOUND):
        container_id = await runtime.start(sh(node, "trap '' TERM; echo ready; sleep 600 & wait"))
        await until_logged(runtime, container_id, b"ready\n")
        begun = time.monotonic()
        await runtime.stop(container_id, grace)
        took = time.monotonic() - begun
        assert await runtime.wait(container_id) == 137  # 128 + SIGKILL, as Docker reports it
    assert took >= grace * 0.9


async def test_exec_returns_output_and_exit_code(runtime: Runtime, node: str) -> None:
    async with asyncio.timeout(BOUND):
        container_id = await runtime.start(sh(node, "sleep 600"))
        hi = await runtime.exec(container_id, ["echo", "hi"])
        four = await runtime.exec(container_id, ["sh", "-c", "exit 4"])
    assert hi == ExecResult(0, b"hi\n" if real(runtime) else b"")
    assert four.exit_code == 4


async def test_a_cancelled_exec_leaves_nothing_running(runtime: Runtime, node: str) -> None:
    skip_fake(runtime)
    token = f"{uuid.uuid4().int % 90000 + 10000}"  # sleep 3xxxxx: a process no other test runs
    pattern = f"3{token[0]}[{token[1]}]{token[2:]}"  # matches its argument, but not this grep's own
    async with asyncio.timeout(BOUND):
        container_id = await runtime.start(sh(node, "sleep 600"))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await runtime.exec(container_id, ["sh", "-c", f"touch exec-began; sleep 3{token}; echo late"])
        assert (await runtime.exec(container_id, ["test", "-e", "exec-began"])).exit_code == 0
        async with asyncio.timeout(5.0):  # a killed process may take a moment to vanish
            gone = await runtime.exec(container_id, ["sh", "-c", until_no_process(pattern)])
        assert gone == ExecResult(0, b"")


def until_no_process(pattern: str) -> str:
    """A script that returns once no process's command line matches `pattern` (no pgrep in
    busybox-static). The pattern must not match itself: the script's own command line holds it."""
    return f"while grep -qs '{pattern}' /proc/[0-9]*/cmdline; do sleep 0.05; done"


async def test_env_and_working_dir_are_applied(runtime: Runtime, node: str) -> None:
    skip_fake(runtime)
    script = 'echo "$FOO"; pwd; sleep 600'
    async with asyncio.timeout(BOUND):
        container_id = await runtime.start(sh(node, script, env={"FOO": "bar baz"}, working_dir="/tmp"))
        logged = await until_logged(runtime, container_id, b"/tmp\n")
        executed = await runtime.exec(container_id, ["sh", "-c", 'echo "$FOO"; pwd'])
    assert logged == b"bar baz\n/tmp\n"
    assert executed == ExecResult(0, b"bar baz\n/tmp\n")


async def test_args_follow_the_command(runtime: Runtime, node: str) -> None:
    skip_fake(runtime)
    async with asyncio.timeout(BOUND):
        container_id = await runtime.start(spec(node, "sh", "-c", 'echo "$0+$1"', args=["first", "second"]))
        assert await runtime.wait(container_id) == 0
        assert await output(runtime, container_id) == b"first+second\n"


async def test_a_missing_image_is_an_image_pull_error(runtime: Runtime, node: str) -> None:
    async with asyncio.timeout(BOUND):
        if runtime.name == "process":  # the image is ignored
            assert await runtime.ensure_image(MISSING_IMAGE, "Always") == "process://none"
            return
        assert await runtime.ensure_image(IMAGE, "IfNotPresent")
        with pytest.raises(ImagePullError, match="missing"):
            await runtime.ensure_image(MISSING_IMAGE, "IfNotPresent")
        with pytest.raises(ImageNeverPullError):
            await runtime.ensure_image(MISSING_IMAGE, "Never")
        with pytest.raises(ImagePullError):
            await runtime.start(sh(node, "sleep 600", image=MISSING_IMAGE))
        assert await runtime.containers(node) == []


async def test_a_command_that_does_not_exist_is_a_start_error(runtime: Runtime, node: str) -> None:
    skip_fake(runtime)
    async with asyncio.timeout(BOUND):
        with pytest.raises(StartError, match=MISSING_COMMAND):
            await runtime.start(spec(node, MISSING_COMMAND))
        assert await runtime.containers(node) == []  # nothing left of the failed start
        container_id = await runtime.start(sh(node, "sleep 600"))
        with pytest.raises(StartError, match=MISSING_COMMAND):
            await runtime.exec(container_id, [MISSING_COMMAND])


async def test_remove_forgets_the_container(runtime: Runtime, node: str) -> None:
    async with asyncio.timeout(BOUND):
        container_id = await runtime.start(sh(node, "sleep 600"))
        await runtime.remove(container_id)  # even a running one
        with pytest.raises(ContainerNotFound):
            await runtime.inspect(container_id)
        with pytest.raises(ContainerNotFound):
            await output(runtime, container_id)
        await runtime.remove(container_id)  # no error: already gone
        assert await runtime.containers(node) == []


async def test_logs_follow_yields_lines_as_printed_and_ends_when_the_container_exits(
    runtime: Runtime, node: str
) -> None:
    script = "echo one; while [ ! -e go ]; do sleep 0.05; done; echo two"
    async with asyncio.timeout(BOUND):
        container_id = await runtime.start(sh(node, script))
        async with follow(runtime, container_id) as chunks:
            assert await anext(chunks) == (b"one\n" if real(runtime) else STARTED)
            if real(runtime):  # "two" only comes once this file exists: it is streamed, not replayed
                assert (await runtime.exec(container_id, ["touch", "go"])).exit_code == 0
                assert [chunk async for chunk in chunks] == [b"two\n"]
            else:
                await runtime.stop(container_id, 0)
                assert [chunk async for chunk in chunks] == []


async def test_nodes_do_not_see_each_others_containers(runtime: Runtime, node: str) -> None:
    async with asyncio.timeout(BOUND):
        mine = await runtime.start(sh(node, "sleep 600"))
        theirs = await runtime.start(sh(other(node), "sleep 600"))
        assert [c.id for c in await runtime.containers(node)] == [mine]
        assert [c.id for c in await runtime.containers(other(node))] == [theirs]


ADOPTED_SCRIPT = "trap 'exit 0' TERM; echo adopt me; sleep 600 & wait"
FIRST_AGENT = """
import asyncio, sys
from pathlib import Path
from nodeagent.runtime.base import ContainerSpec
from nodeagent.runtime.factory import make_runtime

async def main(kind, root_dir, node, uid, image, script):
    runtime = await make_runtime(kind, root_dir=Path(root_dir))
    spec = ContainerSpec(node=node, pod_uid=uid, pod_namespace="contract", pod_name="adopted",
                         name="main", image=image, command=["sh", "-c", script])
    print(await runtime.start(spec))
    await runtime.close()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_restarted_agent_adopts_running_containers(
    runtime: Runtime, node: str, root_dir: Path
) -> None:
    skip_fake(runtime)
    uid = uuid.uuid4().hex
    async with asyncio.timeout(BOUND):
        # The first agent is a process of its own: it starts a container and exits.
        first = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            FIRST_AGENT,
            runtime.name,
            str(root_dir),
            node,
            uid,
            IMAGE,
            ADOPTED_SCRIPT,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=asyncio.subprocess.PIPE,
        )
        printed, _ = await first.communicate()
        assert first.returncode == 0
        container_id = printed.decode().strip()
        listed = await runtime.containers(node)
        info = await runtime.inspect(container_id)
        await until_logged(runtime, container_id, b"adopt me\n")
        await runtime.stop(container_id, 10.0)
        code = await runtime.wait(container_id)
        ended = await runtime.inspect(container_id)
    assert [(c.id, c.pod_uid, c.pod_name, c.status) for c in listed] == [
        (container_id, uid, "adopted", "running")
    ]
    assert info.status == "running"
    assert ended.status == "exited"
    if runtime.name == "process":  # only the parent that is gone could have reaped it
        assert (code, ended.exit_code, ended.error) == (-1, -1, "exit code unknown (agent restarted)")
    else:
        assert code == ended.exit_code == 0


async def test_version_and_stats(runtime: Runtime, node: str) -> None:
    async with asyncio.timeout(BOUND):
        version = await runtime.version()
        container_id = await runtime.start(sh(node, "echo ready; sleep 600"))
        await until_logged(runtime, container_id, b"ready\n")
        stats = await runtime.stats(container_id)
    assert version.startswith(f"{runtime.name}://")
    assert stats.cpu_nanos >= 0 and stats.memory_bytes > 0


async def test_make_runtime_names_and_a_silent_engine(tmp_path: Path) -> None:
    nowhere = f"unix://{tmp_path}/no-docker.sock"
    with pytest.raises(ValueError, match="unknown runtime"):
        await make_runtime("podman", root_dir=tmp_path)
    with pytest.raises(RuntimeFailure, match="no Docker engine answers"):
        await make_runtime("docker", root_dir=tmp_path, docker_url=nowhere)
    fallback = await make_runtime("auto", root_dir=tmp_path, docker_url=nowhere)
    assert fallback.name == "process"
    await fallback.close()


@pytest.mark.docker
async def test_docker_calls_still_answer_with_more_open_streams_than_a_connection_pool_holds(
    tmp_path: Path,
) -> None:
    """A node of 100+ containers holds 100+ open `wait`s: other calls must not queue behind them.
    Event streams stand in for the waits (long requests that need no containers)."""
    runtime = await _make("docker", tmp_path)
    assert isinstance(runtime, DockerRuntime)
    try:
        async with contextlib.AsyncExitStack() as streams:
            for _ in range(110):
                await streams.enter_async_context(runtime._stream("events"))
            async with asyncio.timeout(BOUND):
                assert (await runtime.version()).startswith("docker://")
    finally:
        await runtime.close()
