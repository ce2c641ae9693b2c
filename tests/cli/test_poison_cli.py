"""`steer` and an object whose stored value cannot be read (written with a raw KV put)."""

from __future__ import annotations

import asyncio

from bus.store import Store
from tests.cli.conftest import Steer
from tests.services.test_poison import pod, poison


async def test_steer_says_an_object_could_not_be_read_and_deletes_it(
    steer: Steer, store: Store, ns: str
) -> None:
    await store.create(pod("good", ns))
    await poison(store, "Pod", ns, "bad")
    listing = await asyncio.to_thread(steer, "get", "pods", "-n", ns)
    assert listing.code == 0 and "good" in listing.out and "bad" not in listing.out
    assert listing.err_lines[0].startswith('Warning: 1 pods could not be read and are left out: "bad"')
    named = await asyncio.to_thread(steer, "get", "pod", "bad", "-n", ns)
    assert named.code == 1 and len(named.err_lines) == 1
    assert 'pods "bad" in namespace' in named.err and "could not be read" in named.err
    deleted = await asyncio.to_thread(steer, "delete", "pod", "bad", "-n", ns)
    assert deleted.code == 0 and 'pod "bad" deleted' in deleted.out
    again = await asyncio.to_thread(steer, "get", "pods", "-n", ns)
    assert again.code == 0 and not again.err_lines
