"""Run the implementations side by side, in fresh processes, interleaved.

``python benchmarks/run.py --quick``: 10^4 and 10^5 no-op jobs through 64
workers, 3 rounds (a couple of minutes), for ``nox -s bench``.
``python benchmarks/run.py --full``: 10^4, 10^5 and 10^6 no-op jobs through
8, 64 and 1000 workers, plus the checkpoint and ~20 µs CPU jobs at 10^5 x 64;
writes ``benchmarks/results/results.{md,json,png}``.
``python benchmarks/run.py --compare``: every implementation on 10^5 no-op
jobs and 10^5 jobs that pass one checkpoint, through 64 workers, 5 rounds;
writes ``benchmarks/results/compare.md`` (the README's "compared with"
figures).

Each round runs every implementation once per case, in a new process each
time, in an order that rotates from round to round; the reported figure is
the median over the rounds, and the ratio is to the nursery +
CapacityLimiter idiom's median in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from report import write_report
from workloads import IDIOM, IMPLEMENTATIONS

HERE = Path(__file__).parent
MAIN_PEERS = [
    "trio_pool submit (telemetry off)",
    "trio_pool submit (telemetry, no SDK)",
    "trio_pool submit (telemetry, SDK)",
    "trio_pool map (telemetry, no SDK)",
    IDIOM,
    "trio channel pool (floor)",
    "anyio task group + CapacityLimiter",
    "aiometer.run_all",
    "asyncio TaskGroup + Semaphore",
]
SLOW = {
    "aiometer.run_all",
    "ThreadPoolExecutor",
    "trio_pool submit (telemetry, SDK)",
    "trio_pool map (telemetry, SDK)",
}


def measure(name: str, n: int, workers: int, job: str) -> dict[str, float]:
    """Run one implementation once, in a fresh process."""
    output = subprocess.run(
        [sys.executable, str(HERE / "worker.py"), name, str(n), str(workers), job],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    ).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def cases(
    full: bool, rounds: int, compare: bool = False
) -> list[tuple[int, int, str, list[str], int]]:
    """(jobs, workers, job kind, implementations, rounds) to run."""
    if compare:
        return [
            (10**5, 64, job, list(IMPLEMENTATIONS), rounds)
            for job in ("noop", "checkpoint")
        ]
    if not full:
        return [(n, 64, "noop", MAIN_PEERS, rounds) for n in (10**4, 10**5)]
    everything = list(IMPLEMENTATIONS)
    planned = []
    for n in (10**4, 10**5, 10**6):
        for workers in (8, 64, 1000):
            names = (
                everything if n < 10**6 else [x for x in everything if x not in SLOW]
            )
            planned.append((n, workers, "noop", names, 3 if n < 10**6 else 1))
    for job in ("checkpoint", "cpu"):
        planned.append((10**5, 64, job, everything, 3))
    return planned


def run(
    full: bool, quick_rounds: int = 3, compare: bool = False
) -> list[dict[str, Any]]:
    """Measure every case; return one row per (case, implementation)."""
    rows = []
    for n, workers, job, names, rounds in cases(full, quick_rounds, compare):
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for round_index in range(rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(measure(name, n, workers, job))
        idiom = statistics.median(s["us_per_job"] for s in samples[IDIOM])
        print(f"\n{n:>8} {job} jobs, {workers} workers ({rounds} rounds)", flush=True)
        for name in names:
            us = statistics.median(s["us_per_job"] for s in samples[name])
            rss = max(s["peak_rss_mib"] for s in samples[name])
            rows.append(
                {
                    "jobs": n,
                    "workers": workers,
                    "job": job,
                    "implementation": name,
                    "us_per_job": us,
                    "ratio_to_idiom": us / idiom,
                    "peak_rss_mib": rss,
                    "rounds": rounds,
                }
            )
            print(
                f"  {name:<40} {us:8.2f} µs/job  {us / idiom:5.2f}x idiom"
                f"  {rss:7.1f} MiB",
                flush=True,
            )
        if full:
            skipped = sorted(set(IMPLEMENTATIONS) - set(names))
            if skipped:
                print("  skipped here (too slow at this size):", ", ".join(skipped))
    return rows


def write_comparison(rows: list[dict[str, Any]], path: Path, rounds: int) -> None:
    """The --compare run as Markdown tables (one per job kind), cheapest first."""
    lines = [
        "# Every implementation, one run",
        "",
        f"10^5 jobs through 64 workers; Python {sys.version.split()[0]}; "
        f"medians of {rounds} rounds, each implementation in a fresh process, "
        "the order rotating per round (`python benchmarks/run.py --compare`).",
    ]
    titles = {
        "noop": "No-op jobs",
        "checkpoint": "Jobs that pass one checkpoint (`trio.lowlevel.checkpoint()`, "
        "`asyncio.sleep(0)`)",
    }
    for job, title in titles.items():
        lines += [
            "",
            f"## {title}",
            "",
            "| implementation | µs/job | × idiom | peak RSS (MiB) |",
            "| --- | ---: | ---: | ---: |",
        ]
        of_job = [row for row in rows if row["job"] == job]
        for row in sorted(of_job, key=lambda row: row["us_per_job"]):
            lines.append(
                f"| {row['implementation']} | {row['us_per_job']:.2f} "
                f"| {row['ratio_to_idiom']:.2f} | {row['peak_rss_mib']:.1f} |"
            )
    lines += telemetry_cost(rows)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def telemetry_cost(rows: list[dict[str, Any]]) -> list[str]:
    """What the OpenTelemetry SDK costs: each pool with the SDK as a multiple
    of the same pool with telemetry on and no SDK, in the same run."""
    lines = [
        "",
        "## Telemetry's cost",
        "",
        "Each pool with the OpenTelemetry SDK (a span per job to an exporter "
        "that drops it, metrics to an in-memory reader), as a multiple of the "
        "same pool with telemetry on and no SDK installed.",
        "",
        "| pool | job | SDK | SDK, nothing sampled |",
        "| --- | --- | ---: | ---: |",
    ]
    times = {(row["implementation"], row["job"]): row["us_per_job"] for row in rows}
    for pool in ("map", "submit"):
        for job in ("noop", "checkpoint"):
            base = times.get((f"trio_pool {pool} (telemetry, no SDK)", job))
            sdk = times.get((f"trio_pool {pool} (telemetry, SDK)", job))
            unsampled = times.get(
                (f"trio_pool {pool} (telemetry, SDK, nothing sampled)", job)
            )
            if base is None or sdk is None or unsampled is None:
                continue
            lines.append(
                f"| {pool} | {job} | {sdk / base:.1f}× | {unsampled / base:.1f}× |"
            )
    return lines


def main() -> None:
    """Parse the arguments, run, and write the report for --full."""
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the nox -s bench run")
    mode.add_argument("--full", action="store_true", help="the whole matrix")
    mode.add_argument(
        "--compare",
        action="store_true",
        help="every peer at 10^5 x 64, no-op and checkpoint jobs",
    )
    parser.add_argument("--rounds", type=int, help="rounds (quick: 3, compare: 5)")
    args = parser.parse_args()
    rounds = args.rounds or (5 if args.compare else 3)
    rows = run(full=args.full, quick_rounds=rounds, compare=args.compare)
    if args.compare:
        write_comparison(rows, HERE / "results" / "compare.md", rounds)
        print(f"\nwrote {HERE / 'results'}/compare.md")
    if args.full:
        write_report(rows, HERE / "results")
        print(f"\nwrote {HERE / 'results'}/results.md, .json and .png")


if __name__ == "__main__":
    main()
