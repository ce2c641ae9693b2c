"""A packet through a `policyrules.Ruleset`, as the kernel would judge it: for table tests.

It reads only the rule forms policyrules writes and fails on any other, so a new form cannot
slip by untested. The kernel tests (test_policy_kernel.py) show that nft agrees.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from nodeagent.network.policyrules import FORWARD_CHAIN, INPUT_CHAIN, NftSet, Ruleset


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    protocol: str = "tcp"
    port: int = 80
    established: bool = False


_VMAP = re.compile(r"ip (saddr|daddr) vmap \{ (.*) \}")
_MATCH = re.compile(
    r"(?:ip (?P<dir>saddr|daddr) (?P<addr>\S+) )?"
    r"(?:meta l4proto (?P<l4>\w+) |(?P<proto>\w+) dport (?P<ports>\{ [^}]* \}|\S+) )?return"
)
_TRIPLES = re.compile(r"ip daddr \. meta l4proto \. th dport @(\S+) return")


def allowed(ruleset: Ruleset, packet: Packet, *, hook: str = "forward") -> bool:
    chain = FORWARD_CHAIN if hook == "forward" else INPUT_CHAIN
    return _run(ruleset, chain, packet) != "drop"


def _run(ruleset: Ruleset, chain: str, packet: Packet) -> str:
    """The verdict of a chain: accept, drop, or return (fell off its end or `return`ed)."""
    for rule in ruleset.chains[chain]:
        if rule == "ct state established,related accept":
            if packet.established:
                return "accept"
        elif rule == "counter drop":
            return "drop"
        elif found := _VMAP.fullmatch(rule):
            address = packet.src if found.group(1) == "saddr" else packet.dst
            entries = dict(item.split(" : jump ") for item in found.group(2).split(", "))
            verdict = _run(ruleset, entries[address], packet) if address in entries else "return"
            if verdict != "return":
                return verdict
        elif found := _TRIPLES.fullmatch(rule):
            if f"{packet.dst} . {packet.protocol} . {packet.port}" in ruleset.sets[found.group(1)].elements:
                return "return"
        elif found := _MATCH.fullmatch(rule):
            if _matches(ruleset, found, packet):
                return "return"
        else:
            raise AssertionError(f"rule form unknown to the simulator: {rule}")
    return "return"


def _matches(ruleset: Ruleset, found: re.Match[str], packet: Packet) -> bool:
    if found.group("dir"):
        address = packet.src if found.group("dir") == "saddr" else packet.dst
        target = found.group("addr")
        if target.startswith("@"):
            if not _in_set(ruleset.sets[target[1:]], address):
                return False
        elif address != target:
            return False
    if found.group("l4") and found.group("l4") != packet.protocol:
        return False
    if found.group("proto"):
        if found.group("proto") != packet.protocol:
            return False
        values = found.group("ports").strip("{} ").split(", ")
        if not any(_in_range(value, packet.port) for value in values):
            return False
    return True


def _in_range(value: str, port: int) -> bool:
    low, _, high = value.partition("-")
    return int(low) <= port <= int(high or low)


def _in_set(nft_set: NftSet, address: str) -> bool:
    ip = ipaddress.IPv4Address(address)
    for element in nft_set.elements:
        if "-" in element:
            low, high = element.split("-")
            if ipaddress.IPv4Address(low) <= ip <= ipaddress.IPv4Address(high):
                return True
        elif ip in ipaddress.IPv4Network(element):
            return True
    return False
