"""Property-based: random operations keep the pool's invariants.

Every accepted job ends in exactly one terminal state, its handle resolves,
and ``submitted == queued + running + succeeded + failed + timed_out +
cancelled`` after every step.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_pool

from .helpers import assert_balanced, assert_no_bookkeeping

durations = st.sampled_from([0, 0.5, 1, 2, 5])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), durations, st.sampled_from([None, 0.7, 3])),
        st.tuples(st.just("fail"), durations),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
        st.tuples(st.just("advance"), st.sampled_from([0, 0.25, 1, 3])),
        st.tuples(st.just("resize"), st.integers(1, 4), st.integers(0, 3)),
        st.tuples(st.just("wait_blocked")),
    ),
    max_size=40,
)
endings = st.sampled_from(["drain", "close", "shutdown", "cancel", "raise"])


async def job(seconds: float, fail: bool) -> float:
    await trio.sleep(seconds)
    if fail:
        raise ValueError(seconds)
    return seconds


async def scenario(
    workers: int,
    max_extra: int,
    capacity: int,
    steps: list[tuple[Any, ...]],
    ending: str,
) -> None:
    jobs: list[trio_pool.Job[float]] = []

    async def body(pool: trio_pool.Pool) -> None:
        for step in steps:
            kind = step[0]
            try:
                if kind == "submit":
                    jobs.append(
                        pool.submit_nowait(job, step[1], False, timeout=step[2])
                    )
                elif kind == "fail":
                    jobs.append(pool.submit_nowait(job, step[1], True))
            except trio_pool.PoolOverloaded:
                pass
            if kind == "cancel" and jobs:
                victim = jobs[int(step[1]) % len(jobs)]
                victim.cancel()
            elif kind == "advance":
                await trio.sleep(step[1])
            elif kind == "resize":
                pool.resize(step[1], max_workers=step[1] + step[2])
            elif kind == "wait_blocked":
                await trio.testing.wait_all_tasks_blocked()
            assert_balanced(pool)
            stats = pool.statistics()
            assert stats.min_workers <= stats.max_workers
        if ending == "close":
            pool.close()
        elif ending == "shutdown":
            await pool.shutdown(grace_period=1)
            assert all(j.done for j in jobs)
        elif ending == "raise":
            raise KeyError("ending")

    pool_ref: list[trio_pool.Pool] = []
    with trio.move_on_after(0.5 if ending == "cancel" else 1e9):
        try:
            async with trio_pool.open_pool(
                workers,
                max_workers=workers + max_extra,
                capacity=capacity,
                idle_timeout=2,
            ) as pool:
                pool_ref.append(pool)
                await body(pool)
        except KeyError:
            assert ending == "raise"

    (pool,) = pool_ref
    assert_no_bookkeeping(pool)
    assert all(j.done for j in jobs)
    for j in jobs:  # every handle resolves, consistently with its state
        result = await j.wait()
        assert (j.state is trio_pool.JobState.SUCCEEDED) == (
            result.__class__.__name__ == "Value"
        )
    states = Counter(j.state.value for j in jobs)
    stats = pool.statistics()
    assert stats.submitted == len(jobs)
    assert (
        stats.succeeded,
        stats.failed,
        stats.timed_out,
        stats.cancelled,
    ) == (
        states["succeeded"],
        states["failed"],
        states["timed_out"],
        states["cancelled"],
    )


@settings(max_examples=150, deadline=None)
@given(
    workers=st.integers(1, 3),
    max_extra=st.integers(0, 2),
    capacity=st.integers(0, 4),
    steps=operations,
    ending=endings,
)
def test_random_operations_keep_the_invariants(
    workers: int,
    max_extra: int,
    capacity: int,
    steps: list[tuple[Any, ...]],
    ending: str,
) -> None:
    trio.run(
        scenario,
        workers,
        max_extra,
        capacity,
        steps,
        ending,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
