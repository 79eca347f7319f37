"""CPU-bound jobs through a pool: in the Trio thread, in threads, in processes.

Each job counts the primes below ``--limit`` in pure Python
(`cpu_work.count_primes`, about 30 ms of one core at the default 50,000).
One run measures, side by side:

* **plain loop, no Trio**: the jobs one after another, the one-core floor;
* **in-thread**: a pool job calls the function in the pool's own thread;
* **to_thread**: a pool job hands it to ``trio.to_thread.run_sync`` (the GIL
  lets one thread compute at a time);
* **trio_parallel**: a pool job hands it to ``trio_parallel.run_sync`` (a
  worker process each, ``kill_on_cancel=True``);
* **bare trio_parallel**: the same calls from a nursery, one task per job and
  trio-parallel's limiter the only bound, without the pool (the floor for
  the pool's overhead).

The pools have ``--workers`` workers (default: the CPU count), and
trio-parallel's limiter as many processes. Every round runs every
implementation once, each in its own ``trio.run``, in an order that rotates
from round to round, after one warm-up round that is not counted (it starts
the worker processes and threads). Reported: the median throughput over the
rounds, its range, and the ratio to in-thread in the same run; and what a
first call to a new worker process costs (a process start), against a call
to a warm one.

Run: ``python benchmarks/cpu_bound.py`` (about 30 s on 2 cores) writes
``benchmarks/results/cpu_bound.md``; ``--quick`` (3 rounds of fewer jobs,
for ``nox -s bench``) prints the table and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
import trio_parallel

import trio_pool

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))

from cpu_work import JOB_LIMIT, count_primes

RESULTS = Path(__file__).parent / "results"
IN_THREAD = "in-thread"


def plain_loop(jobs: int, limit: int, workers: int) -> float:
    """The jobs one after another, no Trio: seconds taken."""
    start = time.perf_counter()
    counts = [count_primes(limit) for _ in range(jobs)]
    elapsed = time.perf_counter() - start
    check(counts, jobs, limit)
    return elapsed


async def in_thread(limit: int) -> int:
    return count_primes(limit)


async def to_thread(limit: int) -> int:
    return await trio.to_thread.run_sync(count_primes, limit)


async def in_process(limit: int) -> int:
    return await trio_parallel.run_sync(count_primes, limit, kill_on_cancel=True)


def through_pool(job: Callable[[int], Awaitable[int]]) -> Callable[..., float]:
    """A measurement: ``jobs`` runs of ``job`` through a pool, in a fresh trio.run."""

    async def measure(jobs: int, limit: int, workers: int) -> float:
        trio_parallel.current_default_worker_limiter().total_tokens = workers
        start = time.perf_counter()
        async with trio_pool.open_pool(workers, telemetry=False) as pool:
            async with pool.map(job, [limit] * jobs) as results:
                counts = [count async for count in results]
        elapsed = time.perf_counter() - start
        check(counts, jobs, limit)
        return elapsed

    def run(jobs: int, limit: int, workers: int) -> float:
        return trio.run(measure, jobs, limit, workers)

    return run


def bare_trio_parallel(jobs: int, limit: int, workers: int) -> float:
    """One task per job in a nursery, trio-parallel's limiter the only bound."""

    async def measure() -> float:
        trio_parallel.current_default_worker_limiter().total_tokens = workers
        counts: list[int] = []

        async def one() -> None:
            counts.append(await in_process(limit))

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(jobs):
                nursery.start_soon(one)
        elapsed = time.perf_counter() - start
        check(counts, jobs, limit)
        return elapsed

    return trio.run(measure)


def check(counts: list[int], jobs: int, limit: int) -> None:
    """Every job computed the right count."""
    expected = [count_primes(limit)] * jobs
    if counts != expected:
        raise RuntimeError(f"wrong results: {counts[:5]}... != {expected[:5]}...")


IMPLEMENTATIONS: dict[str, Callable[[int, int, int], float]] = {
    "plain loop, no Trio": plain_loop,
    IN_THREAD: through_pool(in_thread),
    "to_thread (pool job → trio.to_thread.run_sync)": through_pool(to_thread),
    "trio_parallel (pool job → trio_parallel.run_sync)": through_pool(in_process),
    "bare trio_parallel (nursery, no pool)": bare_trio_parallel,
}


def process_start(samples: int) -> tuple[float, float]:
    """Median seconds of a first call to a new worker process, and of a warm one."""

    async def once() -> tuple[float, float]:
        async with trio_parallel.open_worker_context() as context:
            start = time.perf_counter()
            await context.run_sync(count_primes, 0)
            cold = time.perf_counter() - start
            start = time.perf_counter()
            await context.run_sync(count_primes, 0)
            warm = time.perf_counter() - start
        return cold, warm

    pairs = [trio.run(once) for _ in range(samples)]
    return (
        statistics.median(cold for cold, _ in pairs),
        statistics.median(warm for _, warm in pairs),
    )


def cpu_seconds() -> tuple[float, float, float]:
    """CPU seconds used so far: by the machine, by this process and its children,
    and stolen by the hypervisor (Linux; zeros elsewhere).

    Children are the live ones (trio-parallel's workers), read from /proc.
    """
    try:
        with open("/proc/stat", encoding="ascii") as file:
            fields = [int(x) for x in file.readline().split()[1:9]]
    except OSError:
        return 0.0, 0.0, 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    machine = (user + nice + system + irq + softirq) / ticks
    me = os.getpid()
    own = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            rest = stat.read_text(encoding="ascii").rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(stat.parent.name) == me or int(rest[1]) == me:
            own += int(rest[11]) + int(rest[12])  # utime, stime
    return machine, own / ticks, steal / ticks


def run(
    jobs: int, limit: int, workers: int, rounds: int
) -> tuple[dict[str, list[float]], tuple[float, float, float]]:
    """Seconds per round of each implementation (after a warm-up round), and
    the CPUs used on average meanwhile: by the benchmark (its worker
    processes included), by other processes, stolen by the hypervisor."""
    names = list(IMPLEMENTATIONS)
    for name in names:  # warm-up: processes and threads start here
        IMPLEMENTATIONS[name](max(workers, jobs // 4), limit, workers)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    start, (machine, own, steal) = time.perf_counter(), cpu_seconds()
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            seconds[name].append(IMPLEMENTATIONS[name](jobs, limit, workers))
        print(f"round {index + 1}/{rounds} done", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - start
    machine_after, own_after, steal_after = cpu_seconds()
    used = own_after - own
    usage = (
        used / elapsed,
        max(0.0, machine_after - machine - used) / elapsed,
        (steal_after - steal) / elapsed,
    )
    return seconds, usage


def table(
    seconds: dict[str, list[float]],
    jobs: int,
    limit: int,
    workers: int,
    starts: tuple[float, float],
    load: tuple[tuple[float, ...], tuple[float, ...]],
    usage: tuple[float, float, float],
) -> str:
    """The results as Markdown."""
    rates = {name: [jobs / s for s in samples] for name, samples in seconds.items()}
    base = statistics.median(rates[IN_THREAD])
    rounds = len(seconds[IN_THREAD])
    before, after = load
    lines = [
        "# CPU-bound jobs: in the Trio thread, in threads, in processes",
        "",
        f"{jobs} jobs of `count_primes({limit})` (pure Python, "
        f"{1000 * statistics.median(seconds['plain loop, no Trio']) / jobs:.1f} ms "
        f"of one core each) per round; pools of {workers} workers, "
        f"trio-parallel's limiter at {workers} processes; medians of {rounds} "
        "rounds after a warm-up round, implementations interleaved "
        "(`python benchmarks/cpu_bound.py`).",
        "",
        f"Python {platform.python_version()}, trio-parallel "
        f"{_version('trio-parallel')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs (shared); load average "
        f"{before[0]:.2f} before the run, {after[0]:.2f} after. During the "
        f"measured rounds the benchmark used {usage[0]:.2f} CPUs on average, "
        f"other processes {usage[1]:.2f}, and the hypervisor stole "
        f"{usage[2]:.2f}.",
        "",
        "| implementation | jobs/s | range over rounds | × in-thread |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, samples in rates.items():
        median = statistics.median(samples)
        lines.append(
            f"| {name} | {median:.1f} | {min(samples):.1f}-{max(samples):.1f} "
            f"| {median / base:.2f} |"
        )
    cold, warm = starts
    lines += [
        "",
        f"A first call to a new worker process (`open_worker_context`, then "
        f"`run_sync(count_primes, 0)`): {1000 * cold:.0f} ms, the process start; "
        f"the next call to the same process: {1000 * warm:.2f} ms (medians of 5).",
    ]
    return "\n".join(lines) + "\n"


def _version(distribution: str) -> str:
    from importlib.metadata import version

    return version(distribution)


def main() -> None:
    """Parse the arguments, run, print and (unless --quick) save the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, 20 jobs")
    parser.add_argument("--rounds", type=int, help="rounds (default 5; quick: 3)")
    parser.add_argument("--jobs", type=int, help="jobs a round (default 40)")
    parser.add_argument("--limit", type=int, default=JOB_LIMIT)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    jobs = args.jobs or (20 if args.quick else 40)
    before = os.getloadavg()
    seconds, usage = run(jobs, args.limit, args.workers, rounds)
    starts = process_start(5)
    load = (before, os.getloadavg())
    text = table(seconds, jobs, args.limit, args.workers, starts, load, usage)
    print(text)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "cpu_bound.md").write_text(text, encoding="utf-8")
        print(f"wrote {RESULTS / 'cpu_bound.md'}")


if __name__ == "__main__":
    main()
