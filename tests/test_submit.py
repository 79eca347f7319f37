"""Submitting: backpressure, submit_timeout, submit_nowait, run, checkpoints."""

# pyright: reportPrivateUsage=false

from __future__ import annotations

import functools
import itertools

import pytest
import trio
import trio.lowlevel
import trio.testing
from trio._core import _run as trio_run

import trio_pool
from trio_pool import _core

from .helpers import assert_balanced, assert_no_bookkeeping, books, sleep_and_return


async def test_submit_waits_for_room_in_fifo_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    accepted: list[int] = []

    async def submitter(pool: trio_pool.Pool, index: int) -> None:
        await pool.submit(sleep_and_return, 10)
        accepted.append(index)

    async with trio_pool.open_pool(1, capacity=1) as pool:
        await pool.submit(sleep_and_return, 10)  # runs
        await pool.submit(sleep_and_return, 10)  # fills the queue
        async with trio.open_nursery() as nursery:
            for index in range(3):
                nursery.start_soon(submitter, pool, index)
                await trio.testing.wait_all_tasks_blocked()
            stats = pool.statistics()
            assert (stats.waiting_submitters, stats.submitted) == (3, 2)
            assert_balanced(pool)
        assert accepted == [0, 1, 2]
        assert trio.current_time() == 30  # each waited for a job to finish


async def test_cancelled_waiting_submit_leaves_nothing_behind(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=0) as pool:
        await pool.submit(sleep_and_return, 10)
        with trio.move_on_after(3) as scope:
            await pool.submit(sleep_and_return, 1)
        assert scope.cancelled_caught
        stats = pool.statistics()
        assert (stats.submitted, stats.waiting_submitters, stats.rejected) == (1, 0, 0)
        assert not books(pool).waiting_jobs
    assert_no_bookkeeping(pool)


async def test_submit_timeout_raises_pool_overloaded(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=1, submit_timeout=2.5) as pool:
        await pool.submit(sleep_and_return, 10)
        await pool.submit(sleep_and_return, 10)
        with pytest.raises(trio.TooSlowError, match=r"submit_timeout=2\.5") as info:
            await pool.submit(sleep_and_return, 10)
        assert type(info.value) is trio_pool.SubmitTimeout
        assert isinstance(info.value, trio_pool.PoolOverloaded)
        assert info.value.reason == "submit_timeout"
        assert trio.current_time() == 2.5
        stats = pool.statistics()
        assert (stats.rejected, stats.submitted, stats.waiting_submitters) == (1, 2, 0)
        # Room appears in time: no error.
        await trio.sleep(6)  # t=8.5; the running job ends at t=10
        job = await pool.submit(sleep_and_return, 1)
        assert trio.current_time() == 10
        assert not job.done


async def test_submit_nowait(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(2, capacity=1) as pool:
        jobs = [pool.submit_nowait(sleep_and_return, 1) for _ in range(3)]
        with pytest.raises(trio_pool.PoolOverloaded) as info:
            pool.submit_nowait(sleep_and_return, 1)
        assert isinstance(info.value, trio.WouldBlock)
        assert type(info.value) is trio_pool.PoolOverloaded
        assert info.value.reason == "no_room"
        assert "has no room right now" in str(info.value)
        assert pool.statistics().rejected == 1
        for job in jobs:
            await job.result()
        assert pool.submit_nowait(sleep_and_return, 1, "x") is not None


async def test_capacity_zero_is_hand_off_only(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(2, capacity=0) as pool:
        pool.submit_nowait(sleep_and_return, 5)
        pool.submit_nowait(sleep_and_return, 5)
        with pytest.raises(trio_pool.PoolOverloaded):
            pool.submit_nowait(sleep_and_return, 5)
        await trio.testing.wait_all_tasks_blocked()
        assert pool.statistics().queued == 0
        job = await pool.submit(sleep_and_return, 1, "late")  # waits for a worker
        assert trio.current_time() == 5
        assert await job.result() == "late"


async def test_closed_pool_rejects_and_wakes_waiting_submitters(
    autojump_clock: trio.abc.Clock,
) -> None:
    errors: list[BaseException] = []

    async def blocked_submit(pool: trio_pool.Pool) -> None:
        try:
            await pool.submit(sleep_and_return, 1)
        except trio_pool.PoolClosed as error:
            errors.append(error)

    async with trio_pool.open_pool(1, capacity=0) as pool:
        running = await pool.submit(sleep_and_return, 5, "ran")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked_submit, pool)
            await trio.testing.wait_all_tasks_blocked()
            pool.close()
        assert len(errors) == 1
        assert isinstance(errors[0], trio.ClosedResourceError)
        with pytest.raises(trio_pool.PoolClosed, match="is closed"):
            await pool.submit(sleep_and_return, 1)
        with pytest.raises(trio_pool.PoolClosed):
            pool.submit_nowait(sleep_and_return, 1)
        assert pool.statistics().rejected == 3
        assert pool.statistics().closed
        assert await running.result() == "ran"  # queued work still runs
    with pytest.raises(trio_pool.PoolClosed):
        await pool.submit(sleep_and_return, 1)  # after the pool exited


async def test_run_returns_and_raises(autojump_clock: trio.abc.Clock) -> None:
    async def fail() -> None:
        await trio.sleep(1)
        raise ValueError("nope")

    async with trio_pool.open_pool(2) as pool:
        assert await pool.run(sleep_and_return, 1, 42) == 42
        with pytest.raises(ValueError, match="nope"):
            await pool.run(fail)


async def test_run_cancelled_while_waiting_cancels_its_job(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1) as pool:
        with trio.move_on_after(2):
            await pool.run(sleep_and_return, 10)
        await trio.testing.wait_all_tasks_blocked()
        stats = pool.statistics()
        assert (stats.cancelled, stats.running) == (1, 0)
        assert trio.current_time() == 2


async def test_partials_and_bound_methods(autojump_clock: trio.abc.Clock) -> None:
    class Service:
        def __init__(self) -> None:
            self.factor = 3

        async def scale(self, n: int, *, offset: int = 0) -> int:
            await trio.sleep(1)
            return n * self.factor + offset

    service = Service()
    async with trio_pool.open_pool(2) as pool:
        assert await pool.run(service.scale, 2) == 6
        job = await pool.submit(functools.partial(service.scale, offset=1), 2)
        assert await job.result() == 7
        assert job.name == "test_partials_and_bound_methods.<locals>.Service.scale"


async def test_a_job_submitting_to_its_own_full_pool_cannot_hang_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    outcomes: list[str] = []

    async def parent() -> None:
        await trio.sleep(1)
        try:
            await pool.submit(sleep_and_return, 1)
        except trio_pool.PoolOverloaded:
            outcomes.append("overloaded")
        else:
            outcomes.append("submitted")
        await trio.sleep(1)  # keeps its worker a little longer

    async with trio_pool.open_pool(2, capacity=2) as pool:
        parents = [await pool.submit(parent) for _ in range(4)]  # workers and slots
        for job in parents:
            await job.result()
    # The first two found every worker busy and the queue full; by the time
    # the last two ran, the queue had room.
    assert outcomes == ["overloaded", "overloaded", "submitted", "submitted"]
    assert trio.current_time() == 5
    assert_no_bookkeeping(pool)


async def test_nested_submit_with_room_is_accepted(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def parent() -> object:
        child = await pool.submit(sleep_and_return, 1, "child")
        return await child.result()

    async with trio_pool.open_pool(2) as pool:
        assert await pool.run(parent) == "child"


async def test_every_async_call_checks_for_cancellation(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2) as pool:
        done = await pool.submit(sleep_and_return, 0, "v")
        await done.wait()
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await pool.submit(sleep_and_return, 1)
            with pytest.raises(trio.Cancelled):
                await pool.run(sleep_and_return, 1)
            with pytest.raises(trio.Cancelled):
                await done.result()  # even though it need not wait
            with pytest.raises(trio.Cancelled):
                await done.wait()
            with pytest.raises(trio.Cancelled):
                await pool.shutdown(1)
        assert pool.statistics().submitted == 1  # nothing accepted while cancelled


async def test_waiting_calls_are_full_checkpoints(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=0) as pool:
        job = await pool.submit(sleep_and_return, 1)
        with trio.testing.assert_checkpoints():
            await job.result()  # waits for the job
        await pool.submit(sleep_and_return, 1)
        with trio.testing.assert_checkpoints():
            await pool.submit(sleep_and_return, 1)  # waits for the worker
        with trio.testing.assert_checkpoints():
            await pool.shutdown()  # waits for the jobs


async def test_tight_submit_loop_cannot_starve_other_tasks(
    autojump_clock: trio.abc.Clock,
) -> None:
    ticks = 0
    submits_between_ticks: list[int] = []
    submits = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            submits_between_ticks.append(submits)
            await trio.lowlevel.checkpoint()

    async def noop() -> None:
        pass

    async with trio_pool.open_pool(4, capacity=100_000) as pool:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            for _ in range(10_000):
                await pool.submit(noop)
                submits += 1
            nursery.cancel_scope.cancel()
    gaps = [b - a for a, b in itertools.pairwise(submits_between_ticks)]
    # Trio runs each batch of runnable tasks in random order, so between two
    # runs of the ticker the producer may run twice: at most 2 x 32 submits.
    assert max(gaps) <= 2 * _core.YIELD_EVERY
    assert ticks >= 10_000 // (2 * _core.YIELD_EVERY)


async def test_workers_running_non_blocking_jobs_let_others_run(
    autojump_clock: trio.abc.Clock,
) -> None:
    ran_between: list[int] = []
    jobs_run = 0

    async def noop() -> None:
        nonlocal jobs_run
        jobs_run += 1

    async def watcher() -> None:
        while True:
            ran_between.append(jobs_run)
            await trio.lowlevel.checkpoint()

    async with trio_pool.open_pool(1, capacity=1000) as pool:
        for _ in range(1000):
            pool.submit_nowait(noop)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watcher)
            while jobs_run < 1000:
                await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()
    gaps = [b - a for a, b in itertools.pairwise(ran_between)]
    assert max(gaps) <= 2 * _core.YIELD_EVERY  # see the test above


@pytest.mark.parametrize("seed", range(40))
def test_no_submitter_gets_in_before_one_that_waits(seed: int) -> None:
    # Found by the state machine: the pool was cancelled from outside, its
    # workers ended, and a submitter arriving then could grow the pool and
    # get in while an earlier one still waited for room.
    trio_run._r.seed(seed)

    async def main() -> None:
        pool_scope = trio.CancelScope()
        opened: list[trio_pool.Pool] = []

        async def run_pool(task_status: trio.TaskStatus[None]) -> None:
            with pool_scope:
                async with trio_pool.open_pool(1, max_workers=2, capacity=0) as pool:
                    opened.append(pool)
                    task_status.started()
                    await trio.sleep_forever()

        async with trio.open_nursery() as nursery:
            await nursery.start(run_pool)
            pool = opened[0]
            pool.submit_nowait(trio.sleep_forever)
            pool.submit_nowait(trio.sleep_forever)  # both workers busy
            await trio.testing.wait_all_tasks_blocked()
            arrived: list[str] = []

            async def submit(me: str) -> None:
                arrived.append(me)
                try:
                    await pool.submit(trio.sleep, 0)
                except trio_pool.PoolClosed:
                    return
                later = len(arrived) - 1 - arrived.index(me)
                waiting = pool.statistics().waiting_submitters
                assert waiting <= later, f"{me} got in before another"

            nursery.start_soon(submit, "first")
            await trio.testing.wait_all_tasks_blocked()  # it waits for room
            pool_scope.cancel()  # the workers end
            nursery.start_soon(submit, "second")

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_calls_that_need_not_wait_yield_once_in_every_32(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The documented policy (issue 20, point 9: unconditional schedule points
    # cost 3.5x on the no-op submit benchmark, 2.4x on map): every call
    # checks for cancellation; one in every 32 calls of a pool that did not
    # wait is also a schedule point.
    async def noop(_: object = None) -> None:
        pass

    async with trio_pool.open_pool(4, capacity=1000) as pool:
        with trio.testing.assert_checkpoints():
            jobs = [await pool.submit(noop) for _ in range(32)]
        await pool.join()
        with trio.testing.assert_checkpoints():
            for job in jobs:
                await job.result()
        with trio.testing.assert_checkpoints():
            for job in jobs:
                await job.wait()
        async with pool.map(noop, range(64)) as results:
            await trio.testing.wait_all_tasks_blocked()  # all 64 are done
            with trio.testing.assert_checkpoints():
                for _ in range(32):
                    await results.__anext__()
