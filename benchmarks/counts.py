"""Deterministic per-job costs: task steps, wakeups and Python calls per job.

Timings on a shared machine are noisy; these counts are not (Trio's
shuffle of runnable tasks is seeded for each implementation). For each
implementation and job kind it prints, per job: the task steps Trio ran
(``before_task_step``), the reschedules (``task_scheduled``), the
scheduler's batches (``before_io_wait``, one I/O poll each) and, with
``--calls``, the Python function calls (``sys.setprofile``); with
``--opcodes``, the bytecodes executed in Python code (``sys.settrace``).

Usage: ``python benchmarks/counts.py [--calls] [--opcodes] [-n N] [NAME ...]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).parent))

from workloads import IMPLEMENTATIONS

DEFAULT = [
    "trio_pool map (telemetry off)",
    "trio_pool submit (telemetry off)",
    "trio channel pool (floor)",
    "trio nursery + CapacityLimiter (idiom)",
]


class Counter(trio.abc.Instrument):
    """Counts task steps and reschedules."""

    def __init__(self) -> None:
        self.steps = 0
        self.scheduled = 0
        self.batches = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        self.scheduled += 1

    def before_io_wait(self, timeout: float) -> None:
        self.batches += 1


def count(
    name: str, n: int, workers: int, job: str, calls: bool, opcodes: bool
) -> dict[str, float]:
    """Run one implementation under the counters; return the per-job counts."""
    # Trio shuffles each batch of runnable tasks with its own unseeded
    # generator (a private one, hence the guard): seeded, the counts repeat.
    shuffler = getattr(trio._core._run, "_r", None)
    if shuffler is not None:
        shuffler.seed(0)
    counter = Counter()
    original = trio.run

    def run(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("instruments", [counter])
        return original(*args, **kwargs)

    calls_seen = 0
    opcodes_seen = 0

    def trace(frame: Any, event: str, arg: Any) -> Any:
        nonlocal opcodes_seen
        if event == "call":
            frame.f_trace_opcodes = True
        elif event == "opcode":
            opcodes_seen += 1
        return trace

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls_seen
        if event == "call" or event == "c_call":
            calls_seen += 1

    trio.run = run  # type: ignore[assignment]
    try:
        if calls:
            sys.setprofile(profile)
        if opcodes:
            sys.settrace(trace)
        try:
            IMPLEMENTATIONS[name](n, workers, job)
        finally:
            sys.setprofile(None)
            sys.settrace(None)
    finally:
        trio.run = original  # type: ignore[assignment]
    return {
        "steps": counter.steps / n,
        "scheduled": counter.scheduled / n,
        "batches": counter.batches / n,
        "calls": calls_seen / n,
        "opcodes": opcodes_seen / n,
    }


def main() -> None:
    """Print the counts per job of each implementation and job kind."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", default=DEFAULT)
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--calls", action="store_true")
    parser.add_argument("--opcodes", action="store_true")
    args = parser.parse_args()
    for job in ("noop", "checkpoint"):
        for name in args.names:
            got = count(name, args.n, args.workers, job, args.calls, args.opcodes)
            line = f"{job:10} {name:40} steps {got['steps']:6.3f}"
            line += f"  scheduled {got['scheduled']:6.3f}"
            line += f"  batches {got['batches']:6.3f}"
            if args.calls:
                line += f"  calls {got['calls']:7.2f}"
            if args.opcodes:
                line += f"  opcodes {got['opcodes']:7.1f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
