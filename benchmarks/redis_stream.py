"""Entries per second through trio_pool.redis, next to a bare coredis loop.

On loopback, against a throwaway redis-server this script starts (Debian's
``redis-server``), each round fills a fresh stream with no-op jobs (written by
``add_jobs``) and times, in fresh processes:

* **bare loop + handler (floor)**: one process, one coredis client, the
  least a correct consumer-group consumer does: ``XREADGROUP COUNT 32``,
  decode each payload and await the handler with it, then one ``XACK`` per
  batch (an entry is acknowledged only after its handler returned), in a
  loop, on Trio. No pool, no leases, no retries, no concurrency;
* **bare loop, decode only**: the same without the handler call (the floor
  of the first figures, kept to compare);
* **trio_pool.redis, 1 process**: `open_stream_consumer` on a pool of 16
  workers and capacity 16 (room for 32 entries, as the floor's batch), a
  no-op handler, until the group is drained;
* **trio_pool.redis, 2 processes**: the same in two processes sharing the
  stream (two consumers of one group).

Each process connects, says it is ready, and waits for a "go" on a Redis
list; the time runs from the "go" to the moment the group is drained (every
entry acknowledged), as the first process to see it reports. The stream is
filled before the "go", so the bare loops read without ``BLOCK`` and stop at
their first empty read. Rounds rotate the order; the figures are medians over
the rounds, and the ratios are to the floor's median in the same run.

Besides the wall time, each round records the CPU time per entry of the
client processes (their process time from the "go" to the end) and of the
redis-server (``INFO cpu``, user + system, before and after): on a loaded
machine the wall time swings with the load, the CPU time per entry much less.
On a 2-core machine the redis-server, the client processes and everything
else share the 2 cores.

``python benchmarks/redis_stream.py``: 20,000 entries, 5 rounds (about a
minute); writes ``benchmarks/results/redis_stream.md``.
``python benchmarks/redis_stream.py --quick``: 5,000 entries, 3 rounds, for
``nox -s bench``; prints the table and writes nothing. ``--cases`` picks
cases (``bare_handler``, ``bare``, ``pool``, ``pool2``; all by default).
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
from typing import NamedTuple

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
FLOOR = "bare coredis XREADGROUP/XACK loop + handler (floor)"
CASES = {  # name: (its key for --cases, the child's kind, processes)
    FLOOR: ("bare_handler", "bare_handler", 1),
    "bare coredis XREADGROUP/XACK loop, decode only": ("bare", "bare", 1),
    "trio_pool.redis consumer, 1 process": ("pool", "pool", 1),
    "trio_pool.redis consumer, 2 processes": ("pool2", "pool", 2),
}


class Sample(NamedTuple):
    """One round of one case."""

    rate: float
    """Entries per second."""
    client_us: float
    """CPU microseconds per entry of the client processes (all of them)."""
    redis_us: float
    """CPU microseconds per entry of the redis-server."""


# ------------------------------------------------------------ in a child


async def _wait_for_go(client: coredis.Redis[str], stream: str, name: str) -> None:
    await client.rpush(f"{stream}:ready", [name])
    await client.blpop([f"{stream}:go:{name}"], timeout=60)


async def _report_end(client: coredis.Redis[str], stream: str, cpu: float) -> None:
    """Say when this child saw the group drained, and its CPU time since the go."""
    end = f"{time.time()!r} {time.process_time() - cpu!r}"
    await client.rpush(f"{stream}:end", [end])


async def bare(url: str, stream: str, name: str, *, handler: bool = False) -> None:
    """The floor: read a batch, decode it (and, with ``handler``, await the
    handler with each payload), acknowledge it, until none is left."""
    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        await _wait_for_go(client, stream, name)
        cpu = time.process_time()
        while True:
            reply = await client.xreadgroup(GROUP, name, {stream: ">"}, count=BATCH)
            if not reply:
                break
            ids: list[str] = []
            for entries in reply.values():
                for entry in entries:
                    payload = json.loads(entry.field_values["job"])
                    if handler:
                        await handle(payload)
                    ids.append(entry.identifier)
            await client.xack(stream, GROUP, ids)
        await _report_end(client, stream, cpu)


async def bare_handler(url: str, stream: str, name: str) -> None:
    """The floor with a handler: `bare` awaiting `handle` for each entry."""
    await bare(url, stream, name, handler=True)


async def handle(payload: object) -> None:
    """The bare loops' no-op handler."""


async def noop(delivery: Delivery) -> None:
    pass


async def pooled(url: str, stream: str, name: str) -> None:
    """trio_pool.redis: a pool, a consumer, a no-op handler, until drained."""
    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        await _wait_for_go(client, stream, name)
        cpu = time.process_time()
        async with (
            trio_pool.open_pool(WORKERS, capacity=CAPACITY) as pool,
            open_stream_consumer(
                pool, client, noop, stream=stream, group=GROUP, name=name, idle_time=10
            ) as consumer,
        ):
            await consumer.join()
            await _report_end(client, stream, cpu)


# ------------------------------------------------------------ the parent


async def fill(url: str, stream: str, entries: int) -> None:
    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        for start in range(0, entries, 1000):
            await add_jobs(
                client, stream, ({"n": n} for n in range(start, start + 1000))
            )
        await client.xgroup_create(stream, GROUP, "0")


async def redis_cpu(client: coredis.Redis[str]) -> float:
    """The redis-server's CPU seconds so far (user + system)."""
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def start_and_time(
    url: str, stream: str, names: list[str]
) -> tuple[float, float, float]:
    """Wait until every child is ready, say go; return the seconds until the
    group was drained, the CPU seconds of the children, and of Redis."""
    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        for _ in names:
            assert await client.blpop([f"{stream}:ready"], timeout=60)
        redis_before = await redis_cpu(client)
        start = time.time()
        for name in names:
            await client.rpush(f"{stream}:go:{name}", ["go"])
        ends: list[float] = []
        client_cpu = 0.0
        for _ in names:
            reply = await client.blpop([f"{stream}:end"], timeout=120)
            assert reply is not None, "a child did not finish"
            end, cpu = reply[1].split()
            ends.append(float(end))
            client_cpu += float(cpu)
        redis_seconds = await redis_cpu(client) - redis_before
        summary = await client.xpending(stream, GROUP)
        assert not isinstance(summary, tuple) or summary[0] == 0
        # Each child reports when it saw the group drained; the one whose
        # acknowledgement was the last saw it at once, the others a little
        # later (they ask Redis every 0.1 s): the earliest is the drain time.
        return min(ends) - start, client_cpu, redis_seconds


def measure(url: str, case: str, entries: int) -> Sample:
    """Run one case once, in fresh processes."""
    _, kind, processes = CASES[case]
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    trio.run(fill, url, stream, entries)
    names = [f"c{i}" for i in range(processes)]
    children = [
        subprocess.Popen([sys.executable, __file__, "--child", kind, url, stream, name])
        for name in names
    ]
    try:
        seconds, client_cpu, redis_seconds = trio.run(
            start_and_time, url, stream, names
        )
    finally:
        for child in children:
            child.wait(timeout=120)
    assert all(child.returncode == 0 for child in children)
    return Sample(
        entries / seconds, client_cpu / entries * 1e6, redis_seconds / entries * 1e6
    )


def run(
    url: str, entries: int, rounds: int, names: list[str]
) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            sample = measure(url, name, entries)
            samples[name].append(sample)
            print(
                f"  round {index + 1}: {name}: {sample.rate:,.0f}/s, CPU per "
                f"entry {sample.client_us:.1f} us client + {sample.redis_us:.1f} us "
                "Redis",
                flush=True,
            )
    return samples


def table(samples: dict[str, list[Sample]]) -> list[str]:
    """The medians, the ratios to the floor's (if it ran), and the ranges."""
    floor = samples.get(FLOOR)
    floor_rate = statistics.median(s.rate for s in floor) if floor else None
    lines = [
        "| consumer | entries/s (median) | × the floor | min – max "
        "| CPU µs/entry, client | CPU µs/entry, Redis |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, values in samples.items():
        median = statistics.median(s.rate for s in values)
        ratio = "–" if floor_rate is None else f"{median / floor_rate:.2f}"
        rates = [s.rate for s in values]
        client = statistics.median(s.client_us for s in values)
        redis = statistics.median(s.redis_us for s in values)
        lines.append(
            f"| {name} | {median:,.0f} | {ratio} "
            f"| {min(rates):,.0f} – {max(rates):,.0f} | {client:.1f} | {redis:.1f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the nox -s bench run")
    parser.add_argument("--entries", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument(
        "--cases",
        default=",".join(key for key, _, _ in CASES.values()),
        help="comma-separated kinds of case to run (all by default)",
    )
    parser.add_argument("--child", nargs=4, metavar=("KIND", "URL", "STREAM", "NAME"))
    args = parser.parse_args()
    if args.child:
        kind, url, stream, name = args.child
        child = {"bare": bare, "bare_handler": bare_handler, "pool": pooled}[kind]
        trio.run(child, url, stream, name)
        return
    keys = args.cases.split(",")
    names = [name for name, (key, _, _) in CASES.items() if key in keys]
    entries = args.entries or (5_000 if args.quick else 20_000)
    rounds = args.rounds or (3 if args.quick else 5)
    with redis_server() as server:
        redis_version = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=True
        ).stdout.split()[2]
        print(f"{entries:,} no-op entries, {rounds} rounds, {redis_version}")
        samples = run(server.url, entries, rounds, names)
    lines = table(samples)
    print("\n".join(lines))
    if args.quick or len(names) < len(CASES):
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
        f"{BATCH}. CPU time per entry: the client processes' (from the go to "
        f"the end), and redis-server's (`INFO cpu`, user + system).",
        "",
    ]
    RESULTS.write_text("\n".join(header + lines) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
