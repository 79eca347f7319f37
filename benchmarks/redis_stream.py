"""Entries per second through trio_pool.redis, next to a bare coredis loop.

On loopback, against a throwaway redis-server this script starts (Debian's
``redis-server``), each round fills a fresh stream with no-op jobs (written by
``add_jobs``) and times, in fresh processes:

* **bare loop (floor)**: one process, one coredis client, the least a
  consumer-group consumer does: ``XREADGROUP COUNT 32``, decode each payload,
  one ``XACK`` per batch, in a loop, on Trio. No pool, no leases, no retries;
* **trio_pool.redis, 1 process**: `open_stream_consumer` on a pool of 16
  workers and capacity 16 (room for 32 entries, as the floor's batch), a
  no-op handler, until the group is drained;
* **trio_pool.redis, 2 processes**: the same in two processes sharing the
  stream (two consumers of one group).

Each process connects, says it is ready, and waits for a "go" on a Redis
list; the time runs from the "go" to the moment the group is drained (every
entry acknowledged), as the first process to see it reports. Rounds rotate
the order; the figures are medians over the rounds, and the ratios are to
the floor's median in the same run. On a 2-core machine the redis-server,
the client processes and everything else share the 2 cores.

``python benchmarks/redis_stream.py``: 20,000 entries, 5 rounds (about a
minute); writes ``benchmarks/results/redis_stream.md``.
``python benchmarks/redis_stream.py --quick``: 5,000 entries, 3 rounds, for
``nox -s bench``; prints the table and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
import uuid
from importlib.metadata import version
from pathlib import Path

import coredis
import trio

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.redis_server import redis_server

import trio_pool
from trio_pool.redis import Delivery, add_jobs, open_stream_consumer

RESULTS = HERE / "results" / "redis_stream.md"
WORKERS = 16
CAPACITY = 16
BATCH = WORKERS + CAPACITY
GROUP = "bench"
CASES = {
    "bare coredis XREADGROUP/XACK loop (floor)": ("bare", 1),
    "trio_pool.redis consumer, 1 process": ("pool", 1),
    "trio_pool.redis consumer, 2 processes": ("pool", 2),
}
FLOOR = "bare coredis XREADGROUP/XACK loop (floor)"


# ------------------------------------------------------------ in a child


async def _wait_for_go(client: coredis.Redis[str], stream: str, name: str) -> None:
    await client.rpush(f"{stream}:ready", [name])
    await client.blpop([f"{stream}:go:{name}"], timeout=60)


async def bare(url: str, stream: str, name: str) -> None:
    """The floor: read a batch, decode it, acknowledge it, until none is left."""
    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        await _wait_for_go(client, stream, name)
        while True:
            reply = await client.xreadgroup(
                GROUP, name, {stream: ">"}, count=BATCH, block=50
            )
            if not reply:
                break
            ids: list[str] = []
            for entries in reply.values():
                for entry in entries:
                    json.loads(entry.field_values["job"])
                    ids.append(entry.identifier)
            await client.xack(stream, GROUP, ids)
        await client.rpush(f"{stream}:end", [repr(time.time())])


async def noop(delivery: Delivery) -> None:
    pass


async def pooled(url: str, stream: str, name: str) -> None:
    """trio_pool.redis: a pool, a consumer, a no-op handler, until drained."""
    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        await _wait_for_go(client, stream, name)
        async with (
            trio_pool.open_pool(WORKERS, capacity=CAPACITY) as pool,
            open_stream_consumer(
                pool, client, noop, stream=stream, group=GROUP, name=name, idle_time=10
            ) as consumer,
        ):
            await consumer.join()
            await client.rpush(f"{stream}:end", [repr(time.time())])


# ------------------------------------------------------------ the parent


async def fill(url: str, stream: str, entries: int) -> None:
    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        for start in range(0, entries, 1000):
            await add_jobs(
                client, stream, ({"n": n} for n in range(start, start + 1000))
            )
        await client.xgroup_create(stream, GROUP, "0")


async def start_and_time(url: str, stream: str, names: list[str]) -> float:
    """Wait until every child is ready, say go, and return the seconds until
    the last one finished."""
    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        for _ in names:
            assert await client.blpop([f"{stream}:ready"], timeout=60)
        start = time.time()
        for name in names:
            await client.rpush(f"{stream}:go:{name}", ["go"])
        ends: list[float] = []
        for _ in names:
            reply = await client.blpop([f"{stream}:end"], timeout=120)
            assert reply is not None, "a child did not finish"
            ends.append(float(reply[1]))
        summary = await client.xpending(stream, GROUP)
        assert not isinstance(summary, tuple) or summary[0] == 0
        # Each child reports when it saw the group drained; the one whose
        # acknowledgement was the last saw it at once, the others a little
        # later (they ask Redis every 0.1 s): the earliest is the drain time.
        return min(ends) - start


def measure(url: str, case: str, entries: int) -> float:
    """Run one case once, in fresh processes; return entries per second."""
    kind, processes = CASES[case]
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    trio.run(fill, url, stream, entries)
    names = [f"c{i}" for i in range(processes)]
    children = [
        subprocess.Popen([sys.executable, __file__, "--child", kind, url, stream, name])
        for name in names
    ]
    try:
        seconds = trio.run(start_and_time, url, stream, names)
    finally:
        for child in children:
            child.wait(timeout=120)
    assert all(child.returncode == 0 for child in children)
    return entries / seconds


def run(url: str, entries: int, rounds: int) -> dict[str, list[float]]:
    names = list(CASES)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(measure(url, name, entries))
            print(
                f"  round {index + 1}: {name}: {samples[name][-1]:,.0f}/s", flush=True
            )
    return samples


def table(samples: dict[str, list[float]]) -> list[str]:
    floor = statistics.median(samples[FLOOR])
    lines = [
        "| consumer | entries/s (median) | × the floor | min – max |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, values in samples.items():
        median = statistics.median(values)
        lines.append(
            f"| {name} | {median:,.0f} | {median / floor:.2f} "
            f"| {min(values):,.0f} – {max(values):,.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the nox -s bench run")
    parser.add_argument("--entries", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--child", nargs=4, metavar=("KIND", "URL", "STREAM", "NAME"))
    args = parser.parse_args()
    if args.child:
        kind, url, stream, name = args.child
        trio.run(bare if kind == "bare" else pooled, url, stream, name)
        return
    entries = args.entries or (5_000 if args.quick else 20_000)
    rounds = args.rounds or (3 if args.quick else 5)
    with redis_server() as server:
        redis_version = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=True
        ).stdout.split()[2]
        print(f"{entries:,} no-op entries, {rounds} rounds, {redis_version}")
        samples = run(server.url, entries, rounds)
    lines = table(samples)
    print("\n".join(lines))
    if args.quick:
        return
    header = [
        "# Redis stream consumer: entries per second",
        "",
        f"{entries:,} no-op jobs per round on loopback, medians of {rounds} rounds "
        f"in one run, each case in fresh processes, the order rotating per round "
        f"(`python benchmarks/redis_stream.py`). Python {platform.python_version()}, "
        f"coredis {version('coredis')}, {redis_version.replace('v=', 'Redis ')}, "
        f"2 cores shared by redis-server and the consumers. The pool: "
        f"{WORKERS} workers, capacity {CAPACITY}; the floor reads batches of "
        f"{BATCH}.",
        "",
    ]
    RESULTS.write_text("\n".join(header + lines) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
