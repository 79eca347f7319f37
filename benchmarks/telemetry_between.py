"""Why the SDK's calls cost more in the pool than in a loop: what comes between.

`telemetry_floor.py` finds the pool's telemetry a little dearer than the
same SDK calls in a tight loop. This script times the very same calls, the
pool's telemetry for one job (``PoolTelemetry.started`` then ``ended``,
on the same objects), in one process and in interleaved rounds, in four
settings that differ only in what runs between and around them:

* ``loop``: back to back, in a loop (in a Trio task);
* ``checkpoint``: one task, one checkpoint between a job's start and end
  (Trio's scheduler runs; no other task, no other context);
* ``tasks``: 64 tasks, a checkpoint between start and end (as 64 workers);
* ``pool``: the pool's ``map`` over no-op jobs, 64 workers.

Each call is timed with the thread's CPU clock (whose own cost is in every
setting alike); the table shows medians, in ns per job.

Usage: ``python benchmarks/telemetry_between.py [--rounds R] [--chunk C]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).parent
SETTINGS = ("loop", "checkpoint", "tasks", "pool")
KINDS = {
    "sdk": "SDK, sampled",
    "sdk-unsampled": "SDK, nothing sampled",
    "stub": "stub providers",
}


def time_kind(kind: str, rounds: int, chunk: int) -> dict[str, float]:
    """Median CPU ns of one job's telemetry in each setting, for ``kind``."""
    sys.path.insert(0, str(HERE))
    from opentelemetry.context import get_current
    from workloads import (  # pyright: ignore[reportPrivateUsage]
        _telemetry_kwargs,
        trio_noop,
    )

    import trio_pool
    from trio_pool._telemetry import PoolTelemetry

    clock = time.thread_time_ns
    # the times of the starts and of the ends, in each setting
    samples: dict[str, tuple[list[int], list[int]]] = {
        setting: ([], []) for setting in SETTINGS
    }
    starts, ends = samples["loop"]
    started, ended = PoolTelemetry.started, PoolTelemetry.ended

    def timed_started(self: PoolTelemetry, job: Any) -> Any:
        start = clock()
        span = started(self, job)
        starts.append(clock() - start)
        return span

    def timed_ended(self: PoolTelemetry, job: Any, span: Any) -> None:
        start = clock()
        ended(self, job, span)
        ends.append(clock() - start)

    async def main() -> None:
        nonlocal starts, ends
        async with trio_pool.open_pool(64, **_telemetry_kwargs(kind)) as pool:
            core: Any = pool._core  # pyright: ignore[reportPrivateUsage]
            telemetry = core._telemetry
            job = core.make_job(trio_noop, (), None, None, None)
            job._t_submitted = job._t_started = 0.0
            job._t_finished, job._failure = 0.001, None
            parent = get_current()

            async def task(jobs: int, checkpoint: bool) -> None:
                for _ in range(jobs):
                    job._span_context = parent
                    span = telemetry.started(job)
                    if checkpoint:
                        await trio.lowlevel.checkpoint()
                    telemetry.ended(job, span)

            for _ in range(rounds):
                for setting in SETTINGS:
                    starts, ends = samples[setting]
                    if setting == "pool":
                        async with pool.map(trio_noop, range(chunk)) as results:
                            async for _ in results:
                                pass
                    elif setting == "tasks":
                        async with trio.open_nursery() as nursery:
                            for _ in range(64):
                                nursery.start_soon(task, chunk // 64, True)
                    else:
                        await task(chunk, setting == "checkpoint")

    PoolTelemetry.started = timed_started  # type: ignore[method-assign]
    PoolTelemetry.ended = timed_ended  # type: ignore[method-assign]
    try:
        trio.run(main)
    finally:
        PoolTelemetry.started = started  # type: ignore[method-assign]
        PoolTelemetry.ended = ended  # type: ignore[method-assign]
    return {
        setting: statistics.median(starts) + statistics.median(ends)
        for setting, (starts, ends) in samples.items()
    }


def main() -> None:
    """Time each kind's settings and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--chunk", type=int, default=2048)
    args = parser.parse_args()
    print(
        "CPU ns per job (medians of started, plus of ended), "
        f"{args.rounds} rounds of {args.chunk} jobs"
    )
    print(f"{'':22}" + "".join(f"{setting:>12}" for setting in SETTINGS))
    for kind, label in KINDS.items():
        median = time_kind(kind, args.rounds, args.chunk)
        cells = "".join(f"{median[setting]:12.0f}" for setting in SETTINGS)
        print(f"{label:22}{cells}")


if __name__ == "__main__":
    main()
