"""The enforcer's loop with a stand-in nft: it waits for its sources, coalesces bursts, skips
unchanged scripts and outlives nft's failures. (test_policy_kernel.py runs it against nft.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bus.backoff import Backoff
from bus.meta import ObjectMeta
from bus.resources import NetworkPolicy
from bus.resources.networking import IPBlock, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec
from nodeagent.network.nft import NftError
from nodeagent.network.policyenforcer import PolicyEnforcer
from tests.nodeagent.test_policy_kernel import Static
from tests.nodeagent.test_policyrules import NAMESPACES, PODS


class FakeNft:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.scripts: list[str] = []
        self.attempts = 0
        self.applied = asyncio.Event()

    async def apply(self, script: str) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise NftError("nft refused the rules (exit 1): Error: Could not process rule")
        self.scripts.append(script)
        self.applied.set()


def deny(name: str) -> NetworkPolicy:
    return NetworkPolicy(metadata=ObjectMeta(name=name, namespace="app"), spec=NetworkPolicySpec())


def allow_from(name: str, cidr: str) -> NetworkPolicy:
    peer = NetworkPolicyPeer(ip_block=IPBlock(cidr=cidr))
    spec = NetworkPolicySpec(ingress=[NetworkPolicyIngressRule(from_=[peer])])
    return NetworkPolicy(metadata=ObjectMeta(name=name, namespace="app"), spec=spec)


Running = tuple[PolicyEnforcer, Static, FakeNft]


@pytest.fixture
async def running() -> AsyncIterator[tuple[PolicyEnforcer, Static, FakeNft]]:
    policies, nft = Static([deny("a")]), FakeNft(failures=2)
    enforcer = PolicyEnforcer(
        policies,
        Static(list(PODS.values())),
        Static(NAMESPACES),
        node="n1",
        pod_cidr="10.244.0.0/24",
        nft=nft,
        settle=0.01,
        retry=Backoff(first=0.01, cap=0.02),
    )
    task = asyncio.create_task(enforcer.run())
    try:
        yield enforcer, policies, nft
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_failures_are_retried_and_the_loop_goes_on(
    running: tuple[PolicyEnforcer, Static, FakeNft],
) -> None:
    enforcer, _, nft = running
    async with asyncio.timeout(10):
        await nft.applied.wait()
    assert nft.attempts == 3 and len(nft.scripts) == 1
    assert "netpol-in-" in nft.scripts[0] and enforcer.applied == nft.scripts[0]


async def test_a_burst_is_one_apply_and_no_change_none(
    running: tuple[PolicyEnforcer, Static, FakeNft],
) -> None:
    enforcer, policies, nft = running
    async with asyncio.timeout(10):
        await nft.applied.wait()
        nft.applied.clear()
        for i in range(50):
            policies.replace([deny("a"), allow_from("b", f"10.{i}.0.0/16")])
        await nft.applied.wait()
        assert len(nft.scripts) == 2 and "10.49.0.0/16" in nft.scripts[1]
        synced, sync = asyncio.Event(), enforcer.sync

        async def sync_and_tell() -> None:
            await sync()
            synced.set()

        enforcer.sync = sync_and_tell  # type: ignore[method-assign]
        policies.replace([deny("a"), allow_from("b", "10.49.0.0/16")])  # the same: no apply
        await synced.wait()
    assert len(nft.scripts) == 2


async def test_nothing_is_applied_before_every_source_synced() -> None:
    namespaces, nft = Static(NAMESPACES), FakeNft()
    namespaces.synced.clear()
    enforcer = PolicyEnforcer(
        Static([deny("a")]),
        Static(list(PODS.values())),
        namespaces,
        node="n1",
        pod_cidr="10.244.0.0/24",
        nft=nft,
    )
    async with asyncio.timeout(10), asyncio.TaskGroup() as tasks:
        task = tasks.create_task(enforcer.run())
        for _ in range(20):
            await asyncio.sleep(0)
        assert nft.attempts == 0
        namespaces.synced.set()
        await nft.applied.wait()
        task.cancel()
