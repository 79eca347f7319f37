"""Edges of the public API that the other test modules leave out."""

from __future__ import annotations

import logging
import sys
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import pytest
import trio
from opentelemetry.sdk.trace import TracerProvider

import trio_pool

from .helpers import assert_balanced, sleep_and_return

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup


async def double(number: int) -> int:
    await trio.sleep(1)
    return 2 * number


async def test_a_pool_shows_its_name_and_size_in_its_repr() -> None:
    async with trio_pool.open_pool(2, max_workers=5, name="crawler") as pool:
        assert repr(pool) == "<trio_pool.Pool 'crawler' workers=2 max_workers=5>"
        pool.resize(3)
        assert repr(pool) == "<trio_pool.Pool 'crawler' workers=3>"


async def test_map_results_and_as_completed_show_their_state_in_their_repr(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2, name="p") as pool:
        async with pool.map(double, [1, 2]) as results:
            assert repr(results) == (
                "<trio_pool.MapResults of pool 'p' feeding, 0 pulled ahead>"
            )
            assert [value async for value in results] == [2, 4]
            assert repr(results) == (
                "<trio_pool.MapResults of pool 'p' fed, 0 pulled ahead>"
            )
        assert "closed" in repr(results)
        job = pool.submit_nowait(double, 1)
        finished = trio_pool.as_completed([job])
        assert repr(finished) == "<trio_pool.AsCompleted 0 ready, 1 pending>"
        finished.close()
        assert repr(finished) == "<trio_pool.AsCompleted 0 ready, 0 pending, closed>"


async def test_map_results_can_be_entered_only_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2) as pool:
        manager = pool.map(double, [1, 2])
        async with manager as results:
            with pytest.raises(RuntimeError, match="entered only once"):
                await manager.__aenter__()
            assert [value async for value in results] == [2, 4]


async def test_map_results_end_once_closed(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(2) as pool:
        async with pool.map(double, range(10)) as results:
            assert await results.__anext__() == 0
            await results.aclose()
            assert [value async for value in results] == []
            await results.aclose()  # twice is harmless
        assert_balanced(pool)
        assert pool.statistics().running == 0


async def test_an_async_source_is_pulled_only_as_room_frees(
    autojump_clock: trio.abc.Clock,
) -> None:
    pulled: list[int] = []

    async def source() -> AsyncIterator[int]:
        for number in range(5):
            pulled.append(number)
            yield number

    async with trio_pool.open_pool(1, capacity=0) as pool:  # a window of 1
        seen: list[int] = []
        async with pool.map(double, source()) as results:
            async for value in results:
                assert results.pulled_ahead <= 1
                assert len(pulled) <= len(seen) + 2  # this item and the next one
                seen.append(value)
        assert seen == [0, 2, 4, 6, 8]
        assert trio.current_time() == 5  # one job at a time, a second each


class StopEverything(BaseException):
    """Not an Exception: a source that raises it stops the whole map."""


async def test_a_base_exception_from_an_async_source_crashes_the_map(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Issue 20's exit policy: a BaseException of the map's own task (not an
    # interrupt) is a PoolCrashed, with it in the group of its __cause__.
    async def source() -> AsyncIterator[int]:
        yield 1
        await trio.sleep(5)
        raise StopEverything

    seen: list[int] = []
    async with trio_pool.open_pool(2) as pool:
        with pytest.raises(trio_pool.PoolCrashed) as caught:
            async with pool.map(double, source()) as results:
                async for value in results:
                    seen.append(value)
        assert seen == [2]
        cause = caught.value.__cause__
        assert isinstance(cause, BaseExceptionGroup)
        assert cause.split(StopEverything)[1] is None  # pyright: ignore[reportUnknownMemberType]
    assert pool.statistics().running == 0


async def test_as_completed_closes_twice_and_as_an_async_resource(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(3) as pool:
        jobs = [pool.submit_nowait(sleep_and_return, s, s) for s in (3, 1, 2)]
        async with aclosing(trio_pool.as_completed(jobs)) as finished:
            first = await finished.__anext__()
            assert first is jobs[1]
        finished.close()  # already closed by aclosing: nothing happens
        assert [job async for job in finished] == []
        assert [await job.result() for job in jobs] == [3, 1, 2]  # they went on


class BrokenTracerProvider(TracerProvider):
    """A provider whose tracers cannot be had."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no tracer today")


async def test_a_tracer_provider_that_raises_is_logged_once_and_the_pool_goes_on(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "trio_pool")
    async with trio_pool.open_pool(2, tracer_provider=BrokenTracerProvider()) as pool:
        assert await pool.run(double, 4) == 8
        jobs = [await pool.submit(double, n) for n in range(3)]
    assert [await job.result() for job in jobs] == [0, 2, 4]
    (warning,) = [
        r for r in caplog.records if "OpenTelemetry provider raised" in r.message
    ]
    assert warning.exc_info is not None
    assert isinstance(warning.exc_info[1], RuntimeError)


async def two_children(fail_when_cancelled: bool) -> None:
    """A job with its own nursery: two children that sleep until cancelled."""

    async def child(fails: bool) -> None:
        try:
            await trio.sleep_forever()
        finally:
            if fails:
                raise ValueError("cleanup failed")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(child, fail_when_cancelled)
        nursery.start_soon(child, False)


async def test_a_cancelled_job_whose_child_fails_in_cleanup_fails_with_that_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2) as pool:
        job = await pool.submit(two_children, True)
        await trio.sleep(1)
        job.cancel()
        outcome = await job.wait()
    assert job.state is trio_pool.JobState.FAILED
    with pytest.raises(ExceptionGroup) as caught:
        outcome.unwrap()
    assert caught.group_contains(ValueError, match="cleanup failed")
    assert not caught.group_contains(trio.Cancelled)
    assert pool.statistics().failed == 1


async def test_jobs_with_nurseries_cancelled_from_outside_end_cancelled(
    autojump_clock: trio.abc.Clock,
) -> None:
    jobs: list[trio_pool.Job[None]] = []
    with trio.move_on_after(5):
        async with trio_pool.open_pool(2) as pool:
            jobs += [await pool.submit(two_children, False) for _ in range(2)]
            await trio.sleep_forever()
    assert trio.current_time() == 5
    assert [job.state for job in jobs] == [trio_pool.JobState.CANCELLED] * 2
    with pytest.raises(trio_pool.JobCancelled):
        await jobs[0].result()
