"""The benchmark scripts that reach into the pool's private parts still run.

`benchmarks/schedule_points.py` patches private methods for its variant B;
a rename would make B silently measure A (it happened once: the map's
figures in the guide stood on a patch of a method that no longer existed).
Each variant runs here on a few jobs, in a subprocess (B patches the
library for the whole process): only that it runs and reports a time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "schedule_points.py"


@pytest.mark.parametrize("variant", ["A", "B"])
@pytest.mark.parametrize("workload", ["submit", "map"])
def test_schedule_points_variants_run(variant: str, workload: str) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--jobs", "200", "--one", variant, workload],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) > 0
