"""Time one implementation in this fresh process; print the result as JSON.

Usage: ``python benchmarks/worker.py IMPLEMENTATION N WORKERS JOB``.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from workloads import IMPLEMENTATIONS


def main() -> None:
    """Run the named implementation once and report µs per job and peak RSS."""
    name, n, workers, job = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    run = IMPLEMENTATIONS[name]
    gc.collect()
    start = time.perf_counter()
    run(n, workers, job)
    elapsed = time.perf_counter() - start
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"us_per_job": elapsed / n * 1e6, "peak_rss_mib": rss_kib / 1024}))


if __name__ == "__main__":
    main()
