"""The runtime helpers every runtime shares."""

from __future__ import annotations

import asyncio

import pytest

from nodeagent.runtime.base import RuntimeFailure, all_of


async def test_all_of_raises_only_once_every_call_has_ended() -> None:
    """No call is left running behind the caller's back (as gather would leave them)."""
    ended: list[str] = []
    release = asyncio.Event()

    async def fails() -> int:
        ended.append("fails")
        raise RuntimeFailure("the engine does not answer")

    async def slow() -> int:
        await release.wait()
        ended.append("slow")
        return 1

    loop = asyncio.get_running_loop()
    loop.call_later(0.05, release.set)
    with pytest.raises(RuntimeFailure):
        await all_of([slow(), fails(), slow()])
    assert sorted(ended) == ["fails", "slow", "slow"]
    assert await all_of([asyncio.sleep(0, result=n) for n in range(3)]) == [0, 1, 2]
