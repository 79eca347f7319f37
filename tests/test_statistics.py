"""What `Pool.statistics` counts (issue 17, finding 9)."""

from __future__ import annotations

import trio
import trio.testing

import trio_pool

from .helpers import assert_balanced


async def test_jobs_handed_to_workers_that_have_not_run_are_not_queued(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(3, capacity=1) as pool:
        jobs = [pool.submit_nowait(trio.sleep, 1) for _ in range(3)]
        # The first and the third went to idle workers, which have not run
        # since (the second found the first worker still waking: the queue
        # took it). Only the second waits for a worker.
        assert [job.state for job in jobs] == [trio_pool.JobState.QUEUED] * 3
        stats = pool.statistics()
        assert (stats.queued, stats.running, stats.capacity) == (1, 2, 1)
        assert_balanced(pool)
        await trio.testing.wait_all_tasks_blocked()  # every job starts
        assert [job.state for job in jobs] == [trio_pool.JobState.RUNNING] * 3
        assert (pool.statistics().queued, pool.statistics().running) == (0, 3)
        assert_balanced(pool)
        jobs[0].cancel()
        await pool.join()
        assert_balanced(pool)


async def test_a_handed_job_cancelled_before_it_starts_leaves_no_count(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2, capacity=0) as pool:
        job = pool.submit_nowait(trio.sleep, 1)
        assert pool.statistics().running == 1
        job.cancel()
        stats = pool.statistics()
        assert (stats.queued, stats.running, stats.cancelled) == (0, 0, 1)
        assert_balanced(pool)
        await trio.testing.wait_all_tasks_blocked()
        assert pool.statistics().running == 0
        assert_balanced(pool)


async def test_a_job_waiting_for_a_worker_being_started_is_not_queued(
    autojump_clock: trio.abc.Clock,
) -> None:
    """DESIGN.md: ``queued`` never exceeds the capacity. A scaling pool takes
    a job beyond its capacity for each worker it starts; until that worker
    runs, the job counts as running, as a job handed to an idle one does."""
    async with trio_pool.open_pool(1, capacity=0, max_workers=4) as pool:
        jobs = [pool.submit_nowait(trio.sleep, 1) for _ in range(4)]
        stats = pool.statistics()
        assert stats.queued <= stats.capacity, stats
        assert (stats.queued, stats.running) == (0, 4), stats
        assert_balanced(pool)
        await trio.testing.wait_all_tasks_blocked()  # the new workers run
        assert [job.state for job in jobs] == [trio_pool.JobState.RUNNING] * 4
        stats = pool.statistics()
        assert (stats.queued, stats.running, stats.workers) == (0, 4, 4), stats
        assert_balanced(pool)
