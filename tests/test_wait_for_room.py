"""Pool.wait_for_room: a notification that room appeared, without submitting."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trio_pool
from trio_pool import _waiters

from .helpers import assert_balanced, assert_no_bookkeeping, books, sleep_and_return
from .test_core import interrupt_at, run_interrupted


def watching(pool: trio_pool.Pool) -> int:
    """Tasks parked in `wait_for_room` now (after checking the invariants)."""
    assert_balanced(pool)
    return books(pool).watching


async def wait_and_note(pool: trio_pool.Pool, woke: list[float]) -> None:
    with trio.fail_after(100):  # a watcher never woken fails, not hangs
        await pool.wait_for_room()
    woke.append(trio.current_time())


async def test_with_room_it_returns_at_once_and_is_a_checkpoint(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=1) as pool:
        with trio.testing.assert_checkpoints():
            await pool.wait_for_room()  # an idle worker
        pool.submit_nowait(trio.sleep, 5)
        with trio.testing.assert_checkpoints():
            await pool.wait_for_room()  # a place in the queue
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await pool.wait_for_room()
        assert trio.current_time() == 0
        assert watching(pool) == 0


async def test_it_waits_until_a_job_leaves_the_full_queue(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=1) as pool:
        pool.submit_nowait(trio.sleep, 5)
        pool.submit_nowait(trio.sleep, 3)
        woke: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_and_note, pool, woke)
            await trio.testing.wait_all_tasks_blocked()
            assert watching(pool) == 1
            with pytest.raises(trio_pool.PoolOverloaded):
                pool.submit_nowait(trio.sleep, 1)
        assert woke == [5]  # the second job left the queue for the worker
        pool.submit_nowait(trio.sleep, 1)  # the room it announced
        assert watching(pool) == 0


async def test_it_waits_until_a_worker_is_idle_with_capacity_zero(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2, capacity=0) as pool:
        pool.submit_nowait(trio.sleep, 4)
        pool.submit_nowait(trio.sleep, 7)
        woke: list[float] = []
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(wait_and_note, pool, woke)
            await trio.testing.wait_all_tasks_blocked()
            assert watching(pool) == 3
        assert woke == [4, 4, 4]  # every watcher is told; one may take the room
        assert pool.statistics().idle_workers == 1


async def test_blocked_submitters_keep_their_turn(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=0) as pool:
        pool.submit_nowait(trio.sleep, 5)
        woke: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.submit, trio.sleep, 5)  # blocked first
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(wait_and_note, pool, woke)
            await trio.testing.wait_all_tasks_blocked()
            assert pool.statistics().waiting_submitters == 1
            assert watching(pool) == 1
            await trio.sleep(6)  # the worker took the blocked submitter's job
            assert (woke, pool.statistics().waiting_submitters) == ([], 0)
            assert watching(pool) == 1
        assert woke == [10]


async def test_a_submitter_that_gives_up_lets_the_watcher_in(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=1) as pool:
        pool.submit_nowait(trio.sleep, 5)
        pool.submit_nowait(trio.sleep, 5)
        woke: list[float] = []

        async def impatient() -> None:
            with trio.move_on_after(1):
                await pool.submit(trio.sleep, 5)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(impatient)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(wait_and_note, pool, woke)
        assert woke == [5]


async def test_cancelling_a_queued_job_makes_room(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=1) as pool:
        pool.submit_nowait(trio.sleep, 5)
        queued = pool.submit_nowait(trio.sleep, 5)
        woke: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_and_note, pool, woke)
            await trio.sleep(2)
            queued.cancel()
        assert woke == [2]


async def test_a_pool_that_may_grow_has_room_and_a_resize_makes_room(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=0, max_workers=2) as pool:
        pool.submit_nowait(trio.sleep, 5)
        await pool.wait_for_room()  # it may start a second worker
        pool.submit_nowait(trio.sleep, 5)
        woke: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_and_note, pool, woke)
            await trio.sleep(1)
            assert watching(pool) == 1
            pool.resize(1, max_workers=3)
        assert woke == [1]


async def test_in_a_pool_with_a_rate_an_idle_worker_is_room_once_a_token_is_there(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=0, rate=0.5, burst=1) as pool:
        await pool.submit(trio.sleep, 1)  # the token of t=0
        await trio.sleep(1.5)  # the job ended at t=1 (not a tie with it)
        assert pool.statistics().idle_workers == 1
        with pytest.raises(trio_pool.PoolOverloaded):
            pool.submit_nowait(trio.sleep, 1)  # no token before t=2
        woke: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_and_note, pool, woke)
        assert woke == [2]
        pool.submit_nowait(trio.sleep, 1)


async def test_the_pool_closing_raises_pool_closed(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=0) as pool:
        pool.submit_nowait(trio.sleep, 5)
        raised: list[BaseException] = []

        async def watch() -> None:
            with pytest.raises(trio_pool.PoolClosed, match="wait_for_room") as info:
                await pool.wait_for_room()
            raised.append(info.value)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            nursery.start_soon(watch)
            await trio.testing.wait_all_tasks_blocked()
            pool.close()
        assert len(raised) == 2
        assert raised[0] is not raised[1]
        assert watching(pool) == 0
        with pytest.raises(trio_pool.PoolClosed, match="is closed"):
            await pool.wait_for_room()
    assert_no_bookkeeping(pool)


async def test_a_cancelled_watcher_leaves_nothing_behind(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=0) as pool:
        pool.submit_nowait(trio.sleep, 5)
        with trio.move_on_after(2) as scope:
            await pool.wait_for_room()
        assert scope.cancelled_caught
        assert watching(pool) == 0
        assert trio.current_time() == 2


async def test_inside_one_of_its_own_jobs_it_is_refused(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1) as pool:
        job = pool.submit_nowait(pool.wait_for_room)
        with pytest.raises(RuntimeError, match=r"wait_for_room\(\).*own jobs"):
            await job.result()


async def test_wait_then_submit_nowait_in_a_loop_places_every_item(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2, capacity=1) as pool:
        jobs: list[trio_pool.Job[object]] = []

        async def feed(items: range) -> None:
            for item in items:
                while True:
                    await pool.wait_for_room()
                    try:
                        jobs.append(pool.submit_nowait(sleep_and_return, 1, item))
                    except trio_pool.PoolOverloaded:
                        continue
                    break

        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed, range(10))
            nursery.start_soon(feed, range(10, 20))
        results = [await job.result() for job in jobs]
        assert len(results) == 20
        assert set(results) == set(range(20))
        assert trio.current_time() == 10  # two workers always busy
        assert watching(pool) == 0


def test_ctrl_c_while_it_parks_leaves_no_stale_watcher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Registering and parking are one KI-protected step: an interrupt between
    them reaches the task once parked, and its abort takes the record out."""
    pools: list[trio_pool.Pool] = []

    async def main() -> None:
        async with trio_pool.open_pool(1, capacity=0) as pool:
            pools.append(pool)
            pool.submit_nowait(trio.sleep, 10)
            # registered as a watcher, not parked yet:
            interrupt_at(monkeypatch, _waiters, "wait_task_rescheduled", after=False)
            await pool.wait_for_room()

    run_interrupted(main)
    assert books(pools[0]).watching == 0
    assert_no_bookkeeping(pools[0])
