"""A/B timing of two copies of trio_pool, interleaved, on a busy machine.

Each round runs every implementation and job kind once per source tree, each
in a fresh process (`worker.py`), alternating the trees; it prints the
medians per tree and their ratio. Check out the other tree first, e.g.
``git archive main src | tar -x -C /tmp/base``.

Times are the process's CPU time unless ``--wall``.

Usage: ``python benchmarks/ab.py BASE_SRC NEW_SRC [--rounds R] [-n N]
[--jobs noop,checkpoint] [--wall] [IMPLEMENTATION ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
DEFAULT = ["trio_pool map (telemetry off)", "trio_pool submit (telemetry off)"]


CPU_TIMER = """
import gc, sys, time
sys.path.insert(0, sys.argv[1])
from workloads import IMPLEMENTATIONS
run = IMPLEMENTATIONS[sys.argv[2]]
n = int(sys.argv[3])
gc.collect()
start = time.process_time()
run(n, 64, sys.argv[4])
print((time.process_time() - start) / n * 1e6)
"""
"""The child that times one run in CPU time: on a loaded machine, far less
noisy than the wall clock (which counts the time others ran)."""


def time_once(src: str, name: str, n: int, job: str, cpu: bool) -> float:
    """µs per job of one run of ``name`` with trio_pool imported from ``src``."""
    env = {**os.environ, "PYTHONPATH": src}
    if cpu:
        command = ["-c", CPU_TIMER, str(HERE), name, str(n), job]
    else:
        command = [str(HERE / "worker.py"), name, str(n), "64", job]
    out = subprocess.run(
        [sys.executable, *command],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out) if cpu else float(json.loads(out)["us_per_job"])


def main() -> None:
    """Run the rounds and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base")
    parser.add_argument("new")
    parser.add_argument("names", nargs="*", default=DEFAULT)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--jobs", default="noop,checkpoint")
    parser.add_argument(
        "--wall", action="store_true", help="wall-clock time (default: CPU time)"
    )
    args = parser.parse_intermixed_args()
    trees = {"base": args.base, "new": args.new}
    trees = {label: str(Path(src).resolve()) for label, src in trees.items()}
    times: dict[tuple[str, str, str], list[float]] = {}
    for round_ in range(args.rounds):
        order = list(trees.items())
        if round_ % 2:
            order.reverse()
        for job in args.jobs.split(","):
            for name in args.names:
                for label, src in order:
                    times.setdefault((label, job, name), []).append(
                        time_once(src, name, args.n, job, cpu=not args.wall)
                    )
    for job in args.jobs.split(","):
        for name in args.names:
            base = statistics.median(times[("base", job, name)])
            new = statistics.median(times[("new", job, name)])
            print(
                f"{job:10} {name:36} base {base:6.2f}  new {new:6.2f} µs/job"
                f"  new/base {new / base:5.3f}"
            )


if __name__ == "__main__":
    main()
