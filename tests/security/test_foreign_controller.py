"""docs/protocol.md is a contract a controller in another language can be written from: the
JavaScript controller of examples/controllers/js (Node.js, nats.js), written from the page alone,
runs under a credential confined to one namespace, exposes a labelled Deployment there with a
Service, and can act nowhere else: what it may not do is refused, it says so, and stays up."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bus import natsserver
from bus.client import Client
from bus.connection import connect
from bus.credentials import CredentialsError
from bus.errors import NotFound
from bus.meta import LabelSelector, ObjectMeta
from bus.resources import Deployment, Service
from bus.resources.apps import DeploymentSpec
from bus.resources.pod import Container, PodSpec, PodTemplateSpec
from cli import registry
from tests.conftest import REPO
from tests.securecluster import SecureCluster
from tests.waiting import wait_for

EXAMPLE = REPO / "examples" / "controllers" / "js"
NODE, NPM = shutil.which("node"), shutil.which("npm")
LABEL = "example.steersman.io/expose"
IDENTITY = "expose"  # edit, confined to namespace "mine"

pytestmark = pytest.mark.skipif(
    NODE is None or NPM is None, reason="node and npm are needed to run the JavaScript controller"
)


@pytest.fixture(scope="module")
def node_modules() -> None:
    """`npm ci` into the example once; node_modules stays there (ignored by git), stamped with
    the lock file it was installed from."""
    digest = hashlib.sha256((EXAMPLE / "package-lock.json").read_bytes()).hexdigest()
    stamp = EXAMPLE / "node_modules" / ".steer-package-lock.sha256"
    if stamp.exists() and stamp.read_text() == digest:
        return
    assert NPM is not None
    done = subprocess.run(
        [NPM, "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        message = f"npm ci failed in {EXAMPLE}:\n{done.stdout}\n{done.stderr}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    stamp.write_text(digest)


@pytest.fixture(scope="module")
def expose_identity(secure: SecureCluster) -> Path:
    """The controller's own identity, as docs/protocol.md tells a controller's author to make:
    `steer credentials add-user expose --role edit --namespace mine`, then a reload."""
    reg = registry.load(secure.credentials)
    reg.add(IDENTITY, "edit", ("mine",))
    reg.save()
    natsserver.reload(secure.server.process)

    async def until_accepted() -> None:
        async with asyncio.timeout(10):
            while True:  # the reload takes a moment
                try:
                    nc = await connect(secure.url, name="test-expose", credentials=secure.creds(IDENTITY))
                except CredentialsError:
                    await asyncio.sleep(0.1)
                    continue
                await nc.close()
                return

    asyncio.run(until_accepted())
    return secure.credentials / f"{IDENTITY}{registry.SUFFIX}"


@dataclass
class Controller:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def logged(self, text: str, *, times: int = 1, within: float = 30.0) -> None:
        """Until the controller has written `text` (its log is all it tells), `times` times."""
        try:
            async with asyncio.timeout(within):
                while self.output().count(text) < times:
                    assert self.process.poll() is None, f"the controller exited:\n{self.output()}"
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"never logged {text!r}:\n{self.output()}") from None


@contextlib.contextmanager
def controller(secure: SecureCluster, creds: Path, namespace: str) -> Iterator[Controller]:
    assert NODE is not None
    log = secure.tmp / f"expose-{creds.stem}-{namespace}.log"
    args = ["--nats", secure.url, "--creds", str(creds), "--namespace", namespace, "--resync", "3"]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [NODE, "controller.mjs", *args], cwd=EXAMPLE, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield Controller(process, log)
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def deployment(name: str, namespace: str, *, exposed: bool) -> Deployment:
    labels = {"app": name}
    return Deployment(
        metadata=ObjectMeta(name=name, namespace=namespace, labels={LABEL: "true"} if exposed else {}),
        spec=DeploymentSpec(
            replicas=0,
            selector=LabelSelector(match_labels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels),
                spec=PodSpec(containers=[Container(name="main", image="busybox:local")]),
            ),
        ),
    )


async def absent(client: Client, name: str, namespace: str) -> bool:
    try:
        await client.get(Service, name, namespace)
    except NotFound:
        return True
    return False


async def test_the_javascript_controller_exposes_labelled_deployments_of_its_namespace(
    secure: SecureCluster, node_modules: None, expose_identity: Path
) -> None:
    web, plain = f"web-{uuid.uuid4().hex[:8]}", f"plain-{uuid.uuid4().hex[:8]}"
    with controller(secure, expose_identity, "mine") as ctl:
        await ctl.logged('watching Deployments in namespace "mine" as "expose"')
        async with secure.connect_as("admin") as (admin, store):
            await admin.create(deployment(plain, "mine", exposed=False))
            owner = await admin.create(deployment(web, "mine", exposed=True))

            def exposes(svc: Service) -> bool:
                ports = [(p.port, p.target_port) for p in svc.spec.ports]
                owners = [o.uid for o in svc.metadata.owner_references]
                selects = svc.spec.selector == {"app": web}
                return selects and ports == [(80, 8080)] and owners == [owner.metadata.uid]

            await wait_for(store, Service, "mine", web, exposes, within=30)
            assert await absent(admin, plain, "mine")  # reconciled before web: no label, no Service

            # Level-based: a Service deleted behind its back comes back at the next resync.
            await admin.delete(Service, web, "mine")
            await wait_for(store, Service, "mine", web, exposes, within=30)

            await admin.delete(Deployment, web, "mine")
            await admin.delete(Deployment, plain, "mine")
            with contextlib.suppress(NotFound):  # the garbage collector may be there first
                await admin.delete(Service, web, "mine")
        assert ctl.process.poll() is None, ctl.output()


async def test_the_javascript_controller_cannot_act_outside_its_namespace(
    secure: SecureCluster, node_modules: None, expose_identity: Path
) -> None:
    name = f"web-{uuid.uuid4().hex[:8]}"
    otto = secure.credentials / f"otto{registry.SUFFIX}"  # view, every namespace
    async with secure.connect_as("admin") as (admin, _):
        await admin.create(deployment(name, "victim", exposed=True))
        try:
            with (
                controller(secure, expose_identity, "victim") as confined,
                controller(secure, otto, "victim") as viewer,
            ):
                # Confined to "mine", it may not even watch "victim": the consumer's filter is
                # in the subject, and the server refuses it.
                refused = 'Forbidden: user "expose" cannot watch deployments in the namespace "victim"'
                await confined.logged(refused)
                # A viewer of every namespace sees the Deployment, and may not create the Service.
                await viewer.logged(
                    f'victim/{name}: Forbidden: user "otto" cannot create services in the namespace "victim"'
                )
                # It tries again, and stays up.
                await confined.logged(refused, times=2, within=15)
                assert confined.process.poll() is None, confined.output()
                assert viewer.process.poll() is None, viewer.output()
            assert await absent(admin, name, "victim")
        finally:
            await admin.delete(Deployment, name, "victim")
