# pyright: reportPossiblyUnboundVariable=false
"""The Job handle, failure isolation and time limits."""

from __future__ import annotations

import functools
import gc
import logging
import sys
import traceback
import weakref

import outcome
import pytest
import trio
import trio.testing

import trio_pool

from .helpers import assert_balanced, books, sleep_and_return

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


async def explode(message: str) -> None:
    await trio.sleep(1)
    raise ValueError(message)


async def test_result_is_repeatable_with_the_original_traceback(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1) as pool:
        job = await pool.submit(explode, "bad")
        depths: list[int] = []
        for _ in range(3):
            with pytest.raises(ValueError, match="bad") as info:
                await job.result()
            frames = traceback.extract_tb(info.value.__traceback__)
            assert frames[-1].name == "explode"
            depths.append(len(frames))
        assert depths[0] == depths[1] == depths[2]  # does not grow


async def test_wait_returns_outcomes(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(2) as pool:
        good = await pool.submit(sleep_and_return, 1, "value")
        bad = await pool.submit(explode, "nope")
        assert await good.wait() == outcome.Value("value")
        result = await bad.wait()
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, ValueError)
        with pytest.raises(ValueError, match="nope"):
            result.unwrap()
        again = await bad.wait()  # a fresh outcome each time
        assert again is not result
        assert isinstance(again, outcome.Error)


async def test_state_done_name_and_repr(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(1) as pool:
        first = await pool.submit(sleep_and_return, 2)
        second = await pool.submit(sleep_and_return, 2, name="second one")
        partial = await pool.submit(functools.partial(sleep_and_return, 1))
        await trio.testing.wait_all_tasks_blocked()
        states = [first.state, second.state]
        assert states == [trio_pool.JobState.RUNNING, trio_pool.JobState.QUEUED]
        assert [first.done, second.done] == [False, False]
        assert first.name == "sleep_and_return"
        assert second.name == "second one"
        assert partial.name == "sleep_and_return"
        assert repr(second) == "<trio_pool.Job 'second one' queued>"
        await second.result()
        assert second.state is trio_pool.JobState.SUCCEEDED
        assert second.done


async def test_cancel_a_queued_job_frees_its_room(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=1) as pool:
        await pool.submit(sleep_and_return, 10)
        queued = await pool.submit(sleep_and_return, 1)
        async with trio.open_nursery() as nursery:
            waiting: list[trio_pool.Job[object]] = []

            async def submit_one() -> None:
                waiting.append(await pool.submit(sleep_and_return, 1, "got in"))

            nursery.start_soon(submit_one)
            await trio.testing.wait_all_tasks_blocked()
            assert pool.statistics().waiting_submitters == 1
            queued.cancel()
        assert trio.current_time() == 0  # admitted at once, not after 10 s
        assert queued.state is trio_pool.JobState.CANCELLED
        with pytest.raises(trio_pool.JobCancelled, match="was cancelled"):
            await queued.result()
        assert await waiting[0].result() == "got in"
        assert_balanced(pool)


async def test_cancel_a_running_job(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(1) as pool:
        running = await pool.submit(sleep_and_return, 10)
        after = await pool.submit(sleep_and_return, 1, "after")
        await trio.sleep(2)
        running.cancel()
        with pytest.raises(trio_pool.JobCancelled):
            await running.result()
        assert trio.current_time() == 2
        assert await after.result() == "after"  # the worker goes on
        assert trio.current_time() == 3
        running.cancel()  # already done: nothing happens
        assert running.state is trio_pool.JobState.CANCELLED
        stats = pool.statistics()
        assert (stats.cancelled, stats.succeeded) == (1, 1)


async def test_cancelling_many_queued_jobs_sweeps_tombstones(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=1000) as pool:
        await pool.submit(sleep_and_return, 5)
        jobs = [await pool.submit(sleep_and_return, 1) for _ in range(500)]
        for job in jobs[:-1]:
            job.cancel()
        assert books(pool).queue_length < 100  # the cancelled ones were swept
        assert pool.statistics().queued == 1
        assert await jobs[-1].result() is None
        assert trio.current_time() == 6


async def test_a_failing_job_is_isolated_counted_and_logged(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio_pool.open_pool(2) as pool:
        failing = await pool.submit(explode, "broken", name="the bad one")
        others = [await pool.submit(sleep_and_return, 3, n) for n in range(4)]
        assert [await job.result() for job in others] == [0, 1, 2, 3]
        assert failing.state is trio_pool.JobState.FAILED
        assert pool.statistics().failed == 1
    (record,) = [r for r in caplog.records if r.name == "trio_pool" and r.exc_info]
    assert record.levelno == logging.WARNING
    assert "the bad one" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)
    assert "explode" in caplog.text  # the traceback


async def test_an_exception_group_from_the_jobs_own_nursery_is_isolated(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def fan_out() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(explode, "one")
            nursery.start_soon(explode, "two")

    async with trio_pool.open_pool(2) as pool:
        job = await pool.submit(fan_out)
        other = await pool.submit(sleep_and_return, 5, "fine")
        result = await job.wait()
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, ExceptionGroup)
        assert await other.result() == "fine"
        assert job.state is trio_pool.JobState.FAILED


async def test_keyboard_interrupt_is_not_swallowed(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def interrupt() -> None:
        await trio.sleep(1)
        raise KeyboardInterrupt

    jobs: list[trio_pool.Job[object]] = []
    with pytest.raises(KeyboardInterrupt):  # as itself, not in a group
        async with trio_pool.open_pool(2) as pool:
            jobs.append(await pool.submit(interrupt))
            jobs.extend([await pool.submit(sleep_and_return, 10) for _ in range(3)])
            await trio.sleep(100)
    assert jobs[0].state is trio_pool.JobState.FAILED
    assert all(job.state is trio_pool.JobState.CANCELLED for job in jobs[1:])
    assert trio.current_time() == 1


@pytest.mark.parametrize("body", ["nursery", "map"])
async def test_keyboard_interrupt_comes_out_as_itself_past_the_body_s_nursery(
    autojump_clock: trio.abc.Clock, body: str
) -> None:
    # Found by review: with a nursery in the body (a map has one), the job's
    # KeyboardInterrupt came out in a BaseExceptionGroup with a stray Cancelled.
    async def interrupt(_: object = None) -> None:
        await trio.sleep(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # as itself, not in a group
        async with trio_pool.open_pool(2) as pool:
            if body == "nursery":
                async with trio.open_nursery() as nursery:
                    pool.submit_nowait(interrupt)
                    nursery.start_soon(trio.sleep_forever)
            else:
                async with pool.map(interrupt, [None]) as results:
                    async for _ in results:
                        pass  # pragma: no cover
    assert trio.current_time() == 1


async def test_job_timeout_default_and_per_job_override(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(3, job_timeout=5) as pool:
        default = await pool.submit(sleep_and_return, 10)
        longer = await pool.submit(sleep_and_return, 10, timeout=20)
        unlimited = await pool.submit(sleep_and_return, 100, timeout=None)
        with pytest.raises(trio_pool.JobTimeout, match=r"time limit of 5\.0s") as info:
            await default.result()
        assert isinstance(info.value, trio.TooSlowError)
        assert trio.current_time() == 5
        assert default.state is trio_pool.JobState.TIMED_OUT
        await longer.result()
        await unlimited.result()
        assert trio.current_time() == 100
        assert pool.statistics().timed_out == 1


async def test_time_limit_counts_running_time_only(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1) as pool:
        await pool.submit(sleep_and_return, 10)
        late = await pool.submit(sleep_and_return, 3, "ok", timeout=5)
        assert await late.result() == "ok"  # queued 10 s, ran 3 s
        assert trio.current_time() == 13


async def test_a_timed_out_job_does_not_disturb_the_next_one(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1) as pool:
        jobs = [
            await pool.submit(sleep_and_return, 10, timeout=1),
            await pool.submit(sleep_and_return, 2, "second", timeout=3),
            await pool.submit(sleep_and_return, 4, "third"),
        ]
        assert [(await job.wait()).__class__ for job in jobs] == [
            outcome.Error,
            outcome.Value,
            outcome.Value,
        ]
        assert trio.current_time() == 7
        assert jobs[0].state is trio_pool.JobState.TIMED_OUT


async def test_a_job_that_swallows_its_cancellation_keeps_its_result(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def stubborn() -> str:
        try:
            await trio.sleep(10)
        except trio.Cancelled:
            return "ignored the cancel"  # bad manners, but possible
        return "slept"  # pragma: no cover

    async with trio_pool.open_pool(1) as pool:
        job = await pool.submit(stubborn, timeout=1)
        after = await pool.submit(sleep_and_return, 1, "next")
        assert await job.result() == "ignored the cancel"
        assert await after.result() == "next"  # a fresh scope for the next job
        assert trio.current_time() == 2


async def test_a_job_that_turns_its_cancellation_into_an_error_fails(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def converts() -> None:
        try:
            await trio.sleep(10)
        except trio.Cancelled:
            raise RuntimeError("cleanup failed") from None

    async with trio_pool.open_pool(1) as pool:
        job = await pool.submit(converts, timeout=1)
        with pytest.raises(RuntimeError, match="cleanup failed"):
            await job.result()
        assert job.state is trio_pool.JobState.FAILED


async def test_a_non_awaitable_result_fails_the_job(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def real() -> None: ...

    def decorated() -> int:  # a decorator that broke its async function
        return 3

    decorated.__wrapped__ = real  # type: ignore[attr-defined]
    async with trio_pool.open_pool(1) as pool:
        job: trio_pool.Job[object] = await pool.submit(decorated)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="can't be used in 'await'"):
            await job.result()


async def test_system_exit_is_not_swallowed(autojump_clock: trio.abc.Clock) -> None:
    async def leave() -> None:
        await trio.sleep(2)
        raise SystemExit(3)

    with pytest.raises(SystemExit) as info:
        async with trio_pool.open_pool(2) as pool:
            exiting = await pool.submit(leave)
            other = await pool.submit(sleep_and_return, 10)
    assert info.value.code == 3
    assert exiting.state is trio_pool.JobState.FAILED
    assert other.state is trio_pool.JobState.CANCELLED
    assert trio.current_time() == 2


async def test_failures_are_debug_and_warning_only_when_nobody_retrieved_them(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "trio_pool")
    async with trio_pool.open_pool(2) as pool:
        read = await pool.submit(explode, "read", name="read")
        result = await read.wait()
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, ValueError)
        await pool.submit(explode, "dropped", name="dropped")  # handle dropped
        kept = await pool.submit(explode, "kept", name="kept")
        await trio.testing.wait_all_tasks_blocked()
    failures = [r for r in caplog.records if r.exc_info]
    debug = [r.getMessage() for r in failures if r.levelno == logging.DEBUG]
    warning = [r.getMessage() for r in failures if r.levelno == logging.WARNING]
    assert len(debug) == 3  # every failure, with its traceback
    assert len(warning) == 2
    assert "'dropped'" in warning[0]
    assert "its handle was dropped" in warning[0]
    assert "'kept'" in warning[1]
    assert "the pool stopped" in warning[1]
    assert kept.state is trio_pool.JobState.FAILED


@pytest.mark.parametrize("how", ["run", "map"])
async def test_an_idle_worker_keeps_no_result_alive(how: str) -> None:
    # Found by review: an idle worker held its last job's return value (the
    # loop's local) until it ran another job; map's results the same way.
    class Result:
        pass

    async def make(_: object = None) -> Result:
        await trio.lowlevel.checkpoint()
        return Result()

    async with trio_pool.open_pool(1) as pool:
        if how == "run":
            result = await pool.run(make)
        else:
            async with pool.map(make, [None]) as results:
                (result,) = [value async for value in results]
        ref = weakref.ref(result)
        del result
        await trio.testing.wait_all_tasks_blocked()  # the worker is idle
        gc.collect()
        assert ref() is None
