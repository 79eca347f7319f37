# pyright: reportPossiblyUnboundVariable=false
# (objects bound inside "async with" and checked after it)
"""Stopping: draining, close, shutdown, a failing body, outer cancellation."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trio_pool

from .helpers import assert_balanced, assert_no_bookkeeping, sleep_and_return

CANCELLED = trio_pool.JobState.CANCELLED
SUCCEEDED = trio_pool.JobState.SUCCEEDED


async def test_normal_exit_drains_every_queued_job(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2) as pool:
        jobs = [await pool.submit(sleep_and_return, 1, n) for n in range(10)]
    assert trio.current_time() == 5
    assert [job.state for job in jobs] == [SUCCEEDED] * 10
    assert pool.statistics().succeeded == 10
    assert_no_bookkeeping(pool)


async def test_close_then_queued_jobs_still_run(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(1) as pool:
        jobs = [await pool.submit(sleep_and_return, 1) for _ in range(3)]
        pool.close()
        pool.close()  # twice is fine
        for job in jobs:
            await job.result()
        assert pool.statistics().closed
    assert_no_bookkeeping(pool)


async def test_shutdown_cancels_what_is_left_after_the_grace_period(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2) as pool:
        quick = await pool.submit(sleep_and_return, 1)
        slow = [await pool.submit(sleep_and_return, 50) for _ in range(2)]
        queued = [await pool.submit(sleep_and_return, 1) for _ in range(3)]
        await pool.shutdown(grace_period=10)
        assert trio.current_time() == 10
        assert all(job.done for job in [quick, *slow, *queued])
        assert quick.state is SUCCEEDED
        assert [job.state for job in slow] == [CANCELLED] * 2
        # The worker freed at t=1 took the second slow job: these never ran.
        assert [job.state for job in queued] == [CANCELLED] * 3
        assert_balanced(pool)
        with pytest.raises(trio_pool.JobCancelled):
            await slow[0].result()
    assert_no_bookkeeping(pool)


async def test_shutdown_returns_early_when_everything_finishes(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2) as pool:
        jobs = [await pool.submit(sleep_and_return, 3) for _ in range(4)]
        await pool.shutdown(grace_period=100)
        assert trio.current_time() == 6
        assert all(job.state is SUCCEEDED for job in jobs)


async def test_shutdown_without_grace_period_drains(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1) as pool:
        jobs = [await pool.submit(sleep_and_return, 100) for _ in range(3)]
        await pool.shutdown()
        assert trio.current_time() == 300
        assert all(job.state is SUCCEEDED for job in jobs)
        await pool.shutdown()  # again: nothing left, returns at once


async def test_shutdown_with_zero_grace_cancels_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1) as pool:
        jobs = [await pool.submit(sleep_and_return, 100) for _ in range(3)]
        await pool.shutdown(0)
        assert trio.current_time() == 0
        assert all(job.state is CANCELLED for job in jobs)


async def test_bad_grace_period() -> None:
    async with trio_pool.open_pool(1) as pool:
        with pytest.raises(ValueError, match="grace_period must be >= 0, not -1"):
            await pool.shutdown(-1)
        with pytest.raises(TypeError, match="grace_period must be a number"):
            await pool.shutdown("soon")  # type: ignore[arg-type]


async def test_a_raising_body_cancels_every_job_and_comes_out_as_itself(
    autojump_clock: trio.abc.Clock,
) -> None:
    jobs: list[trio_pool.Job[object]] = []
    with pytest.raises(LookupError, match="body") as info:
        async with trio_pool.open_pool(2) as pool:
            jobs.extend([await pool.submit(sleep_and_return, 10) for _ in range(5)])
            await trio.sleep(1)
            raise LookupError("body")
    assert type(info.value) is LookupError  # not an ExceptionGroup
    assert trio.current_time() == 1
    assert [job.state for job in jobs] == [CANCELLED] * 5
    assert_no_bookkeeping(pool)


async def test_the_body_exception_keeps_its_own_cause(
    autojump_clock: trio.abc.Clock,
) -> None:
    cause = OSError("disk")
    with pytest.raises(RuntimeError) as info:
        async with trio_pool.open_pool(1) as pool:
            await pool.submit(sleep_and_return, 10)
            raise RuntimeError("body") from cause
    assert info.value.__cause__ is cause


async def test_outer_cancellation_resolves_every_handle(
    autojump_clock: trio.abc.Clock,
) -> None:
    jobs: list[trio_pool.Job[object]] = []
    with trio.move_on_after(5) as scope:
        async with trio_pool.open_pool(2, capacity=2) as pool:
            jobs.extend([await pool.submit(sleep_and_return, 100) for _ in range(4)])
            await trio.sleep(1000)
    assert scope.cancelled_caught
    assert trio.current_time() == 5
    assert [job.state for job in jobs] == [CANCELLED] * 4
    for job in jobs:
        with pytest.raises(trio_pool.JobCancelled):
            await job.result()
    assert_no_bookkeeping(pool)


async def test_outer_cancellation_while_draining(
    autojump_clock: trio.abc.Clock,
) -> None:
    jobs: list[trio_pool.Job[object]] = []
    with trio.move_on_after(5):
        async with trio_pool.open_pool(1) as pool:
            jobs.extend([await pool.submit(sleep_and_return, 3) for _ in range(4)])
        # the body ended at t=0; the drain is cancelled at t=5
    assert [job.state for job in jobs] == [SUCCEEDED, CANCELLED, CANCELLED, CANCELLED]
    assert_no_bookkeeping(pool)


async def test_outer_cancellation_with_a_submitter_waiting(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.move_on_after(5):
        async with trio_pool.open_pool(1, capacity=0) as pool:
            await pool.submit(sleep_and_return, 100)
            await pool.submit(sleep_and_return, 100)  # waits; cancelled at t=5
    assert trio.current_time() == 5
    assert pool.statistics().submitted == 1
    assert_no_bookkeeping(pool)


async def test_jobs_handed_to_a_worker_but_not_started_are_cancelled(
    autojump_clock: trio.abc.Clock,
) -> None:
    with pytest.raises(KeyError):
        async with trio_pool.open_pool(2) as pool:
            job = pool.submit_nowait(sleep_and_return, 1)  # the worker has not run
            raise KeyError("at once")
    assert job.state is CANCELLED
    assert_no_bookkeeping(pool)


async def test_statistics_is_frozen_and_balanced(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2, capacity=3, name="stats") as pool:
        for _ in range(5):
            await pool.submit(sleep_and_return, 1)
        await trio.testing.wait_all_tasks_blocked()
        stats = pool.statistics()
        assert (stats.name, stats.workers, stats.min_workers, stats.max_workers) == (
            "stats",
            2,
            2,
            2,
        )
        assert (stats.running, stats.queued, stats.capacity) == (2, 3, 3)
        with pytest.raises(AttributeError):
            stats.running = 0  # type: ignore[misc]
        assert_balanced(pool)
