"""The node's pod addresses: one file per address, so that no address is ever given to two live
pods, also across a restart of the agent (a new AddressBook reads the files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.network import names
from nodeagent.network.ipam import AddressBook, AddressesExhausted


def test_addresses_skip_the_network_the_gateway_and_broadcast_and_are_never_given_twice(
    tmp_path: Path,
) -> None:
    book = AddressBook(tmp_path, "10.9.0.0/29")  # .0 network, .1 gateway, .7 broadcast
    given = [book.allocate(f"pod-{i}") for i in range(5)]
    assert given == [f"10.9.0.{i}" for i in range(2, 7)]
    with pytest.raises(AddressesExhausted, match="10.9.0.0/29"):
        book.allocate("pod-5")


def test_a_pod_keeps_its_address_and_a_restarted_agent_sees_every_one(tmp_path: Path) -> None:
    book = AddressBook(tmp_path, "10.9.0.0/24")
    first = book.allocate("a")
    assert book.allocate("a") == first
    second = book.allocate("b")
    again = AddressBook(tmp_path, "10.9.0.0/24")  # the agent, started again
    assert again.leases() == {"a": first, "b": second}
    assert again.allocate("a") == first
    assert again.allocate("c") not in (first, second)


def test_a_freed_address_is_not_given_again_at_once(tmp_path: Path) -> None:
    book = AddressBook(tmp_path, "10.9.0.0/24")
    freed = book.allocate("a")
    book.allocate("b")
    book.release("a")
    assert book.address_of("a") is None
    assert book.allocate("c") != freed  # the next in turn, not the one just freed


def test_files_that_are_not_addresses_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "junk").write_text("x\n")
    (tmp_path / "10.9.0.9").write_text("")  # created, the uid not yet written: no owner
    book = AddressBook(tmp_path, "10.9.0.0/24")
    assert book.leases() == {}
    with pytest.raises(ValueError, match="too small"):
        AddressBook(tmp_path, "10.9.0.0/31")


@pytest.mark.parametrize("make", [names.bridge, names.veth, names.table])
def test_kernel_names_fit_and_differ(make: object) -> None:
    assert callable(make)
    first, second = make("node-1"), make("node-2")
    assert first != second and len(first) <= 15 and len(second) <= 15
