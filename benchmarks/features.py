"""What each optional feature costs per job, side by side in one run.

The same no-op jobs (submit from one task, then every result), 64 workers,
through a plain pool and through pools with one feature on: timings, a rate
limit that never binds (the cost of pacing, not the wait), per-key limits
with 1,000 keys in turn and with a new key for every job, shedding under
a deadline, job groups (all jobs in one group, and a group per 10 jobs, as
request handlers fan out), ``map`` with and without ``key=``, and
priorities (one level, and four levels in turn). The plain
pool is the figure of a pool that has these features and does not use them;
what they cost it unused is counted exactly, not timed: the bytecodes a
plain pool's job runs in each of the package's modules (``sys.settrace``),
zero in every feature's own module.
Each case runs in a fresh process; rounds are interleaved; the figures are
medians, next to the nursery + CapacityLimiter idiom. Peak RSS
shows that a million distinct keys leave nothing behind.

Usage: ``python benchmarks/features.py [--quick] [--rounds N] [--jobs N]``;
writes ``benchmarks/results/features.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

import trio_pool

sys.path.insert(0, str(Path(__file__).parent))
from workloads import IMPLEMENTATIONS

WORKERS = 64
RESULTS = Path(__file__).parent / "results"


async def _noop() -> None:
    """A job that does nothing."""


async def _submit_all(
    pool: trio_pool.Pool, n: int, keys: int | None, shed: bool
) -> None:
    # Handles are dropped as they are made, so that peak RSS shows what the
    # pool itself keeps; join() waits for every job.
    if keys is None:
        for _ in range(n):
            await pool.submit(_noop)
    elif keys == 0:  # a new key for every job
        for i in range(n):
            await pool.submit(_noop, key=i)
    else:
        for i in range(n):
            await pool.submit(_noop, key=i % keys)
    await pool.join()
    if shed:
        assert pool.statistics().shed == 0


async def _submit_with_priorities(pool: trio_pool.Pool, n: int, levels: int) -> None:
    """Every job with a priority: 1 (``levels == 1``), or 0 to ``levels - 1``
    in turn."""
    for i in range(n):
        await pool.submit(_noop, priority=1 if levels == 1 else i % levels)
    await pool.join()


async def _submit_in_groups(pool: trio_pool.Pool, n: int, size: int) -> None:
    """Every job through a group of ``size`` jobs (each block waits for its own)."""
    for start in range(0, n, size):
        async with pool.group() as group:
            for _ in range(min(size, n - start)):
                await group.submit(_noop)


async def _map_all(pool: trio_pool.Pool, n: int, keys: int | None) -> None:
    """Every job through one `Pool.map`, with a key function if ``keys``."""

    async def noop_item(item: int) -> None:
        """A job that does nothing (of one item)."""

    key = None if keys is None else (lambda item: item % keys)
    async with pool.map(noop_item, range(n), key=key) as results:
        async for _ in results:
            pass


CASES: dict[str, dict[str, Any]] = {
    "plain pool": {},
    "timings=True": {"timings": True},
    "rate=1e9, burst=64": {"rate": 1e9, "burst": WORKERS},
    "per_key_limit=2, 1,000 keys": {"per_key_limit": 2, "_keys": 1000},
    "per_key_limit=2, a key per job": {"per_key_limit": 2, "_keys": 0},
    "shed=True, 1 h deadline": {"shed": True, "_deadline": 3600.0},
    "one group of every job": {"_group": 100_000_000},
    "a group per 10 jobs": {"_group": 10},
    "map, no key": {"_map": None},
    "map, key=, per_key_limit=2, 1,000 keys": {"per_key_limit": 2, "_map": 1000},
    "priority=1 on every job": {"_priorities": 1},
    "priorities 0..3 in turn": {"_priorities": 4},
}
IDIOM = "trio nursery + CapacityLimiter (idiom)"


def run_case(name: str, n: int) -> None:
    """Run one case in this process (``--one``)."""
    if name == IDIOM:  # as in run.py: the same code, timed the same way
        gc.collect()
        start = time.perf_counter()
        IMPLEMENTATIONS[IDIOM](n, WORKERS, "noop")
        report(start, n)
        return
    options = dict(CASES[name])
    keys = options.pop("_keys", None)
    deadline = options.pop("_deadline", None)
    group = options.pop("_group", None)
    priorities = options.pop("_priorities", None)
    mapped = "_map" in options
    map_keys = options.pop("_map", None)

    async def main() -> None:
        async with trio_pool.open_pool(WORKERS, telemetry=False, **options) as pool:
            if group is not None:
                await _submit_in_groups(pool, n, group)
            elif priorities is not None:
                await _submit_with_priorities(pool, n, priorities)
            elif mapped:
                await _map_all(pool, n, map_keys)
            elif deadline is None:
                await _submit_all(pool, n, keys, False)
            else:
                await pool.run(_noop)  # one measured run, for the estimate
                with trio.fail_after(deadline):
                    await _submit_all(pool, n, keys, True)

    gc.collect()
    start = time.perf_counter()
    trio.run(main)
    report(start, n)


FEATURE_MODULES = (
    "_rate.py",
    "_keys.py",
    "_shed.py",
    "_priority.py",
    "_group.py",
    "_variants.py",
    "_timed.py",
    "_telemetry.py",
)
"""The modules only a feature runs: a plain pool must run none of their code."""


def bytecodes_by_module(n: int) -> dict[str, dict[str, float]]:
    """Bytecodes per job run in each trio_pool module by a plain pool.

    Deterministic: ``sys.settrace`` with opcode events, over ``n`` no-op
    jobs submitted from one task (as the timed cases) and through one `map`.
    Returns ``{workload: {module file name: bytecodes per job}}``, every
    module of the package listed, zero or not.
    """
    return {workload: _bytecodes_of(workload, n) for workload in ("submit", "map")}


def _bytecodes_of(workload: str, n: int) -> dict[str, float]:
    """`bytecodes_by_module` of one workload."""
    package = Path(trio_pool.__file__).parent
    seen = dict.fromkeys(sorted(path.name for path in package.glob("*.py")), 0)

    def trace(frame: Any, event: str, arg: Any) -> Any:
        filename = frame.f_code.co_filename
        if not filename.startswith(str(package)) or "/redis/" in filename:
            return None
        if event == "call":
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
        elif event == "opcode":
            seen[Path(filename).name] += 1
        return trace

    async def main() -> None:
        async with trio_pool.open_pool(WORKERS, telemetry=False) as pool:
            sys.settrace(trace)
            try:
                if workload == "map":
                    await _map_all(pool, n, None)
                else:
                    await _submit_all(pool, n, None, False)
            finally:
                sys.settrace(None)

    trio.run(main)
    return {name: count / n for name, count in seen.items()}


def unused_table(n: int) -> list[str]:
    """The markdown lines of the unused features' cost (`bytecodes_by_module`)."""
    counts = bytecodes_by_module(n)
    lines = [
        "",
        f"What the features cost a plain pool that does not use them: bytecodes "
        f"per job run in each module ({n:,} no-op jobs, sys.settrace; exact, "
        "not timed). Feature-only modules in bold.",
        "",
        "| module | submit | map |",
        "| --- | ---: | ---: |",
    ]
    for module in counts["submit"]:
        shown = f"**{module}**" if module in FEATURE_MODULES else module
        submit, mapped = counts["submit"][module], counts["map"][module]
        lines.append(f"| {shown} | {submit:.2f} | {mapped:.2f} |")
    for workload in ("submit", "map"):
        total = sum(counts[workload].values())
        in_features = sum(counts[workload][m] for m in FEATURE_MODULES) * n
        lines.append(
            f"\n{workload}: {total:.1f} bytecodes per job; in the feature-only "
            f"modules {in_features:.0f} for the whole run (argument checks "
            "made once, none per job)."
        )
        # A per-job cost would be at least one bytecode per job.
        assert in_features < n, f"a plain pool runs feature code per job: {counts}"
    return lines


def report(start: float, n: int) -> None:
    """Print µs per job since ``start`` and the peak RSS, as JSON."""
    elapsed = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"us_per_job": elapsed / n * 1e6, "peak_rss_mib": rss}))


def main() -> None:
    """Run every case in fresh processes, interleaved; print and write a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="10^4 jobs, 2 rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    if args.one:
        run_case(args.one, args.jobs)
        return
    rounds, n = (2, 10_000) if args.quick else (args.rounds, args.jobs)
    names = [IDIOM, *CASES]
    times: dict[str, list[float]] = {name: [] for name in names}
    rss: dict[str, float] = {}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            out = subprocess.run(
                [sys.executable, __file__, "--one", name, "--jobs", str(n)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            times[name].append(result["us_per_job"])
            rss[name] = max(rss.get(name, 0.0), result["peak_rss_mib"])
    idiom = statistics.median(times[IDIOM])
    plain = statistics.median(times["plain pool"])
    lines = [
        f"{n:,} no-op jobs, {WORKERS} workers, submit each then join(), "
        f"{rounds} rounds (medians), fresh processes, telemetry off",
        "",
        "| pool | µs/job | × idiom | + µs vs plain | peak RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        median = statistics.median(times[name])
        extra = "" if name == IDIOM else f"{median - plain:+.2f}"
        lines.append(
            f"| {name} | {median:.2f} | {median / idiom:.2f} | {extra} | "
            f"{rss[name]:.0f} |"
        )
    lines += unused_table(min(n, 10_000))
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "features.md").write_text(text + "\n")
    assert math.isfinite(idiom)


if __name__ == "__main__":
    main()
