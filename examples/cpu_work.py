"""CPU-bound pool jobs that run on every core, with trio-parallel.

A Trio pool runs its jobs on one thread, so pure-Python computation in a job
holds the GIL and keeps the whole run to one core. A job that hands its
computation to `trio_parallel.run_sync` runs it in a worker process instead,
while the pool still decides how many run at once, how many wait, and for
how long each may run.

trio-parallel starts its processes with *spawn*: the function a process runs
is sent by name and imported there, so it must live in an importable module,
like this one. The how-to (``docs/howto/cpu-bound.rst``), its tests and
``benchmarks/cpu_bound.py`` import `count_primes` from here.

Run ``python examples/cpu_work.py`` (``--help`` for the options) to push a
batch through a pool and print its throughput.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import TYPE_CHECKING

import trio
import trio_parallel

import trio_pool

if TYPE_CHECKING:
    from collections.abc import Sequence

#: A limit whose count takes about 30 ms of one core (limit=50_000: 5,133 primes).
JOB_LIMIT = 50_000


def count_primes(limit: int) -> int:
    """Count the primes below ``limit`` by trial division, in pure Python.

    Slow on purpose: it holds the GIL for its whole run, about 30 ms for
    ``limit=50_000``, and decades for ``limit=10**12``.

    Args:
        limit: count the primes ``p`` with ``2 <= p < limit``.

    Returns:
        How many there are.

    Raises:
        ValueError: ``limit`` is negative.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    count = 0
    for n in range(2, limit):
        for divisor in range(2, math.isqrt(n) + 1):
            if n % divisor == 0:
                break
        else:
            count += 1
    return count


async def primes_job(limit: int) -> int:
    """A pool job: `count_primes` in a worker process, killed if cancelled.

    ``kill_on_cancel=True`` lets the job's time limit, `trio_pool.Job.cancel`
    and the pool's shutdown stop the computation by killing its process.
    """
    return await trio_parallel.run_sync(count_primes, limit, kill_on_cancel=True)


async def run_batch(jobs: int, limit: int, processes: int) -> float:
    """Run ``jobs`` counts of the primes below ``limit``; return the seconds taken.

    The pool has as many workers as trio-parallel may run processes, so a
    job that runs has a process, and the rest wait in the pool's queue. The
    processes are started (a warm-up batch) before the clock starts.
    """
    trio_parallel.current_default_worker_limiter().total_tokens = processes
    async with trio_pool.open_pool(processes, name="cpu") as pool:
        async with pool.map(primes_job, [limit] * processes) as warm_up:
            async for _ in warm_up:
                pass
        start = time.perf_counter()
        async with pool.map(primes_job, [limit] * jobs) as results:
            counts = [count async for count in results]
        elapsed = time.perf_counter() - start
    expected = count_primes(limit)
    if counts != [expected] * jobs:
        raise RuntimeError(f"wrong counts: {counts!r}, expected {expected}")
    return elapsed


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, run a batch and print its throughput."""
    parser = argparse.ArgumentParser(
        description="Count primes in a batch of pool jobs, in worker processes."
    )
    parser.add_argument("--jobs", type=int, default=40, help="jobs (default 40)")
    parser.add_argument(
        "--limit",
        type=int,
        default=JOB_LIMIT,
        help=f"each job counts the primes below this (default {JOB_LIMIT})",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes, and pool workers (default: the CPU count)",
    )
    args = parser.parse_args(argv)
    elapsed = trio.run(run_batch, args.jobs, args.limit, args.processes)
    processes = "1 process" if args.processes == 1 else f"{args.processes} processes"
    print(
        f"{args.jobs} jobs of count_primes({args.limit}) through {processes}: "
        f"{elapsed:.2f} s, "
        f"{args.jobs / elapsed:.1f} jobs/s"
    )


if __name__ == "__main__":  # spawned workers import this module: keep the guard
    main()
