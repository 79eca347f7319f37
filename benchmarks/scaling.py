"""Bursty load through a scaling pool, against fixed pools of its min and max size.

Time is virtual (`trio.testing.MockClock` with autojump), so the times are
exact (worker-seconds vary by about 1%: Trio randomises the order of runnable
tasks) and the run takes a second: each job sleeps, as an I/O-bound job does.
The load is bursts of ``BURST`` jobs of ``JOB_SECONDS`` each, one burst every
``GAP`` seconds. Reported per pool: completion time of all jobs, the mean and
the worst time a job waited in the queue, the peak of live workers, and
worker-seconds (the integral of live workers over time: what the pool held).

Run: ``python benchmarks/scaling.py``; writes ``benchmarks/results/scaling.md``
and, with matplotlib, ``benchmarks/results/scaling.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import trio
import trio.testing

import trio_pool

MIN_WORKERS = 4
MAX_WORKERS = 32
BURSTS = 6
BURST = 48
JOB_SECONDS = 1.0
GAP = 60.0
IDLE_TIMEOUT = 10.0
SAMPLE_EVERY = 0.5
RESULTS = Path(__file__).parent / "results"


async def scenario(workers: int, max_workers: int | None) -> dict[str, Any]:
    """Run the bursty load through one pool and measure it."""
    waits: list[float] = []
    samples: list[tuple[float, int]] = []

    async def job(submitted: float) -> None:
        waits.append(trio.current_time() - submitted)
        await trio.sleep(JOB_SECONDS)

    start = trio.current_time()
    done = trio.Event()

    async def sampler(pool: trio_pool.Pool) -> None:
        while not done.is_set():
            samples.append((trio.current_time() - start, pool.statistics().workers))
            await trio.sleep(SAMPLE_EVERY)

    async with trio.open_nursery() as nursery:
        async with trio_pool.open_pool(
            workers,
            max_workers=max_workers,
            idle_timeout=IDLE_TIMEOUT,
            capacity=BURST * BURSTS,
            telemetry=False,
        ) as pool:
            nursery.start_soon(sampler, pool)
            for burst in range(BURSTS):
                await trio.sleep_until(start + burst * GAP)
                for _ in range(BURST):
                    await pool.submit(job, trio.current_time())
        finished = trio.current_time() - start
        done.set()
    worker_seconds = sum(count * SAMPLE_EVERY for _, count in samples)
    return {
        "finished": finished,
        "mean_wait": sum(waits) / len(waits),
        "max_wait": max(waits),
        "peak_workers": max(count for _, count in samples),
        "worker_seconds": worker_seconds,
        "samples": samples,
    }


def run_all() -> dict[str, dict[str, Any]]:
    """Run the three pools, each under its own virtual clock."""
    pools = {
        f"fixed {MIN_WORKERS}": (MIN_WORKERS, None),
        f"fixed {MAX_WORKERS}": (MAX_WORKERS, None),
        f"scaling {MIN_WORKERS}..{MAX_WORKERS}": (MIN_WORKERS, MAX_WORKERS),
    }
    return {
        label: trio.run(
            scenario, *sizes, clock=trio.testing.MockClock(autojump_threshold=0)
        )
        for label, sizes in pools.items()
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of the results."""
    lines = [
        f"{BURSTS} bursts of {BURST} jobs x {JOB_SECONDS:g} s, one every {GAP:g} s;"
        f" idle_timeout {IDLE_TIMEOUT:g} s (virtual time)",
        "",
        "| pool | all done (s) | mean wait (s) | worst wait (s) | peak workers"
        " | worker-seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, r in results.items():
        lines.append(
            f"| {label} | {r['finished']:.1f} | {r['mean_wait']:.2f} |"
            f" {r['max_wait']:.1f} | {r['peak_workers']} | {r['worker_seconds']:.0f} |"
        )
    lines += [
        "",
        "Times are exact; worker-seconds (sampled every"
        f" {SAMPLE_EVERY:g} s) vary by about 1% from run to run, because Trio"
        " randomises the order in which runnable tasks run.",
    ]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict[str, Any]], path: Path) -> bool:
    """Workers alive over time, one line per pool; False without matplotlib."""
    try:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(figsize=(9, 4))
    for label, r in results.items():
        times, counts = zip(*r["samples"], strict=True)
        axes.step(times, counts, where="post", label=label)
    axes.set_xlabel("time (s, virtual)")
    axes.set_ylabel("live workers")
    axes.set_title("Bursty load: workers alive over time")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def main() -> None:
    """Run, print and save the scenario."""
    results = run_all()
    text = table(results)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scaling.md").write_text(text)
    if plot(results, RESULTS / "scaling.png"):
        print(f"plot: {RESULTS / 'scaling.png'}")
    else:
        print("matplotlib is not installed: no plot", file=sys.stderr)


if __name__ == "__main__":
    main()
