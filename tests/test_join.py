"""Pool.join: wait for every accepted job without closing the pool."""

from __future__ import annotations

from typing import Any

import outcome
import pytest
import trio
import trio.testing

import trio_pool

from .helpers import assert_balanced, books, check_invariants, sleep_and_return


async def fail() -> None:
    await trio.sleep(1)
    raise ValueError("boom")


async def test_join_waits_for_queued_and_running_jobs_and_keeps_the_pool_open(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2, capacity=10) as pool:
        jobs = [pool.submit_nowait(sleep_and_return, n) for n in range(1, 6)]
        failed = pool.submit_nowait(fail)
        await pool.join()
        assert all(job.done for job in jobs)
        assert trio.current_time() == 9  # 1+3+5 on one worker, 2+4 and 1 on the other
        stats = pool.statistics()
        assert (stats.queued, stats.running, stats.closed) == (0, 0, False)
        assert await pool.run(sleep_and_return, 1, "again") == "again"
        await failed.wait()
        assert_balanced(pool)


async def test_join_on_an_idle_pool_is_a_checkpoint(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2) as pool:
        with trio.testing.assert_checkpoints():
            await pool.join()
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await pool.join()


async def test_join_waits_for_jobs_accepted_while_it_waits(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1) as pool:
        pool.submit_nowait(trio.sleep, 5)

        async def later() -> None:
            await trio.sleep(4)
            pool.submit_nowait(trio.sleep, 5)  # queued before the first ends

        async with trio.open_nursery() as nursery:
            nursery.start_soon(later)
            await pool.join()
            assert trio.current_time() == 10


async def test_a_cancelled_join_leaves_the_jobs_alone(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1) as pool:
        job = pool.submit_nowait(sleep_and_return, 10, "done")
        with trio.move_on_after(3):
            await pool.join()
        assert not job.done
        assert books(pool).draining == 0
        assert_balanced(pool)
        assert await job.result() == "done"


async def test_many_joiners_wake_together(autojump_clock: trio.abc.Clock) -> None:
    ended: list[float] = []
    async with trio_pool.open_pool(2) as pool:
        for _ in range(3):
            pool.submit_nowait(trio.sleep, 2)

        async def joiner() -> None:
            await pool.join()
            ended.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(joiner)
    assert ended == [4.0] * 5


async def test_join_inside_one_of_its_own_jobs_is_refused(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def waits_for_all(pool: trio_pool.Pool) -> None:
        await pool.join()

    async with trio_pool.open_pool(2) as pool:
        job = pool.submit_nowait(waits_for_all, pool)
        result = await job.wait()
    assert isinstance(result, outcome.Error)
    assert isinstance(result.error, RuntimeError)
    assert "would wait for that job to end" in str(result.error)


@pytest.mark.parametrize("steps", range(8))
async def test_join_returns_only_when_nothing_is_left_whatever_happens(
    steps: int, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    """Cancels, failures and time-outs at every step: join sees them all end."""
    from trio_pool import _core

    monkeypatch.setattr(_core, "YIELD_EVERY", 2)
    async with trio_pool.open_pool(2, max_workers=3, capacity=3) as pool:
        jobs: list[trio_pool.Job[Any]] = [
            pool.submit_nowait(sleep_and_return, 2),
            pool.submit_nowait(fail),
            pool.submit_nowait(trio.sleep, 100, timeout=3),
            pool.submit_nowait(sleep_and_return, 1),
            pool.submit_nowait(sleep_and_return, 4),
        ]
        for _ in range(steps):
            await trio.lowlevel.cancel_shielded_checkpoint()
            check_invariants(pool)
        jobs[steps % len(jobs)].cancel()
        await pool.join()
        assert all(job.done for job in jobs)
        assert_balanced(pool)
        await jobs[1].wait()
