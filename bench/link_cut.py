"""How soon a node agent is heard again after its network link is cut and healed: figures, not a
test.

The bus (nats-server and one API replica) in a network namespace of its own, one node agent in
another, joined by a veth link to a bridge (tests/hosts.py). For each cut length, each round
takes the node's port on the bridge down, keeps it down, brings it up again, and measures:
  - after heal: from the link's return to the agent's next Lease renewal in the store;
  - silence: from the agent's last renewal before the cut to that renewal, which is what the
    node lifecycle controller compares with --node-grace (10 s by default; a node's pods are
    evicted after about 18 s of silence with the default settle and tolerations).
The agent runs with its default Lease (12 s, renewed every 3 s) unless --lease says otherwise.
Needs root (namespaces).

    .venv/bin/python bench/link_cut.py --cuts 2,5,8,12,20 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bus.protocol import NODE_LEASE_NAMESPACE  # noqa: E402
from bus.resources import Lease, Node  # noqa: E402
from bus.store import Store  # noqa: E402
from tests.agents import node_ready  # noqa: E402
from tests.hosts import HostCluster, NodeAgent  # noqa: E402
from tests.waiting import wait_for  # noqa: E402


async def one_cut(
    cluster: HostCluster, store: Store, agent: NodeAgent, seconds: float, renew: float
) -> tuple[float, float]:
    """(after heal, silence), by when the node's Lease renewals reach a watch, as the node
    lifecycle controller hears them (it counts changes, on its own clock)."""
    arrivals: list[float] = []
    renewed = asyncio.Condition()

    async def follow() -> None:
        synced = False
        async with contextlib.aclosing(store.watch(Lease, NODE_LEASE_NAMESPACE)) as events:
            async for event in events:
                synced = synced or event.type == "SYNCED"
                if synced and event.object is not None and event.object.metadata.name == agent.name:
                    async with renewed:
                        arrivals.append(time.monotonic())
                        renewed.notify_all()

    async def renewal_after(moment: float) -> float:
        async with renewed:
            await renewed.wait_for(lambda: bool(arrivals) and arrivals[-1] > moment)
        return next(t for t in arrivals if t > moment)

    async with asyncio.TaskGroup() as tasks:
        following = tasks.create_task(follow())
        await renewal_after(time.monotonic())
        await asyncio.sleep(random.uniform(0, renew))  # the cut at any moment between renewals
        await asyncio.to_thread(cluster.net.cut, agent.host)
        await asyncio.sleep(seconds)  # the cut itself
        await asyncio.to_thread(cluster.net.heal, agent.host)
        healed = time.monotonic()
        heard = await renewal_after(healed)
        following.cancel()
    last = max(t for t in arrivals if t <= healed)  # renewals that were on their way at the cut count
    return heard - healed, heard - last


async def measure(
    cluster: HostCluster, agent: NodeAgent, cuts: list[float], rounds: int, renew: float
) -> None:
    async with cluster.connect() as (_, store):
        await wait_for(store, Node, "", agent.name, node_ready, within=60)
        print(f"{'cut':>6} {'after heal: median':>19} {'max':>6} {'silence: median':>16} {'max':>6}")
        for seconds in cuts:
            after, silence = [], []
            for _ in range(rounds):
                back, quiet = await one_cut(cluster, store, agent, seconds, renew)
                after.append(back)
                silence.append(quiet)
                await wait_for(store, Node, "", agent.name, node_ready, within=60)
            print(
                f"{seconds:>5g}s {statistics.median(after):>18.1f}s {max(after):>5.1f}s"
                f" {statistics.median(silence):>15.1f}s {max(silence):>5.1f}s",
                flush=True,
            )


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--cuts", default="2,5,8,12,20", help="cut lengths in seconds, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lease", default="12,3", help="the agent's --lease")
    args = parser.parse_args()
    cuts = [float(c) for c in args.cuts.split(",")]
    with tempfile.TemporaryDirectory(prefix="steer-linkcut-") as tmp:
        with HostCluster.running(Path(tmp)) as cluster:
            agent = cluster.start_agent("--lease", args.lease)
            asyncio.run(measure(cluster, agent, cuts, args.rounds, float(args.lease.split(",")[1])))


if __name__ == "__main__":
    main()
