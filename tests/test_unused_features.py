"""Features cost nothing unused: a plain pool's jobs run none of their code.

Counted, not timed: a profile hook counts the calls into each feature-only
module while a plain pool runs jobs. Argument checks made once per pool or
per map are allowed; anything per job would grow with the number of jobs.
(``benchmarks/features.py`` prints the same as bytecodes per module.)
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import trio_pool

FEATURE_MODULES = frozenset(
    {
        "_rate.py",
        "_keys.py",
        "_shed.py",
        "_priority.py",
        "_group.py",
        "_variants.py",
        "_timed.py",
        "_telemetry.py",
    }
)
PACKAGE = str(Path(trio_pool.__file__).parent)


async def noop(_: int = 0) -> None:
    """A job that does nothing."""


async def submit_all(pool: trio_pool.Pool, n: int) -> None:
    """n jobs submitted from one task, every result awaited."""
    jobs = [await pool.submit(noop) for _ in range(n)]
    for job in jobs:
        await job.result()


async def map_all(pool: trio_pool.Pool, n: int) -> None:
    """n jobs through one map."""
    async with pool.map(noop, range(n)) as results:
        async for _ in results:
            pass


async def feature_calls(
    workload: Callable[[trio_pool.Pool, int], Awaitable[None]], n: int
) -> dict[str, int]:
    """Calls into each feature-only module while a plain pool runs ``n`` jobs."""
    calls: dict[str, int] = {}

    def profile(frame: Any, event: str, arg: object) -> None:
        if event == "call":
            filename = frame.f_code.co_filename
            if filename.startswith(PACKAGE):
                name = Path(filename).name
                if name in FEATURE_MODULES:
                    calls[name] = calls.get(name, 0) + 1

    async with trio_pool.open_pool(8, capacity=16) as pool:
        previous = sys.getprofile()
        sys.setprofile(profile)
        try:
            await workload(pool, n)
        finally:
            sys.setprofile(previous)
    return calls


@pytest.mark.parametrize("workload", [submit_all, map_all], ids=["submit", "map"])
async def test_a_plain_pool_runs_no_feature_code_per_job(
    workload: Callable[[trio_pool.Pool, int], Awaitable[None]],
) -> None:
    few = await feature_calls(workload, 50)
    many = await feature_calls(workload, 500)
    assert few == many  # nothing per job
    assert sum(many.values()) <= 2  # at most the argument checks, once
