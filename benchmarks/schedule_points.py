"""A/B: batched schedule points (trio_pool's) against unconditional ones.

``python benchmarks/schedule_points.py [--rounds 7] [--jobs 100000]``

A is trio_pool as it is: `Pool.submit`, `Job.wait`, `Job.result` and the
map's ``__anext__`` always check for cancellation and yield to the scheduler
when they wait, and otherwise once every 32 calls. B makes those four calls
unconditional checkpoints (a schedule point every call), as trio's own
channels are; workers and the map's feeder keep their batching in both.
Each run is a fresh process timing ``trio.run`` alone (no interpreter
start); the variants alternate within each round, in an order that rotates;
the figure is the median over the rounds (issue 20, point 9).
"""

# B patches the pool's private methods.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from typing import Any

WORKERS = 64


def run(variant: str, workload: str, jobs: int) -> float:
    """One run, in this process: seconds inside ``trio.run``."""
    import trio

    import trio_pool

    if variant == "B":
        unconditional()

    async def noop(_: object = None) -> None:
        pass

    async def main() -> None:
        async with trio_pool.open_pool(WORKERS, telemetry=False) as pool:
            if workload == "submit":
                handles = [await pool.submit(noop) for _ in range(jobs)]
                for handle in handles:
                    await handle.result()
            else:
                async with pool.map(noop, range(jobs)) as results:
                    async for _ in results:
                        pass

    start = time.perf_counter()
    trio.run(main)
    return time.perf_counter() - start


def unconditional() -> None:
    """Variant B: submit, Job.wait/result and the map's __anext__ take a
    schedule point at every call; the map's feeder keeps its batching."""
    from trio_pool import _intake, _map, _state

    real_read_done = _state.CoreState.read_done
    real_offer = _intake.Intake.offer

    def always_due(self: Any) -> bool:
        return True

    def offer_always_due(self: Any, job: Any, counted: bool = False) -> int:
        accepted = real_offer(self, job, counted)  # `submit`'s count is in offer
        return _state.YIELD_DUE if accepted and counted else accepted

    def read_done_always(self: Any, what: str) -> bool:
        real_read_done(self, what)
        return True

    real_init = _map.MapResults.__init__

    def init_every_result(self: Any, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        self._yield_every = 1  # the consumer's; the feeder keeps its own

    patches = [
        (_state.CoreState, "yield_due", always_due),
        (_intake.Intake, "offer", offer_always_due),
        (_state.CoreState, "read_done", read_done_always),
        (_map.MapResults, "__init__", init_every_result),
    ]
    for owner, name, replacement in patches:
        if name not in vars(owner):  # renamed: B would silently be A
            raise RuntimeError(f"{owner.__qualname__}.{name} is gone: update B")
        setattr(owner, name, replacement)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--one", nargs=2, metavar=("VARIANT", "WORKLOAD"))
    args = parser.parse_args()
    if args.one:
        print(run(args.one[0], args.one[1], args.jobs))
        return
    for workload in ("submit", "map"):
        seconds: dict[str, list[float]] = {"A": [], "B": []}
        for round_number in range(args.rounds):
            order = ["A", "B"] if round_number % 2 == 0 else ["B", "A"]
            for variant in order:
                output = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--jobs",
                        str(args.jobs),
                        "--one",
                        variant,
                        workload,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                seconds[variant].append(float(output.stdout))
        a, b = (statistics.median(seconds[v]) for v in "AB")
        per_job = (b - a) / args.jobs * 1e6
        print(
            f"{workload}: {args.jobs} no-op jobs, {WORKERS} workers, "
            f"{args.rounds} rounds: A (batched) {a:.3f} s, B (unconditional) "
            f"{b:.3f} s, B/A {b / a:.3f} ({per_job:+.2f} µs a job)"
        )
        print(f"  A runs: {[round(s, 3) for s in seconds['A']]}")
        print(f"  B runs: {[round(s, 3) for s in seconds['B']]}")


if __name__ == "__main__":
    main()
