"""The one exception policy at every block exit (issue 20): every row of the
table in docs/errors.rst, for the pool's and the map's ``async with``, each
with the body failing before and after a checkpoint."""

# pyright: reportPossiblyUnboundVariable=false
# (objects bound inside "async with" and checked after it)

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Literal, cast

import pytest
import trio
import trio.testing

import trio_pool
from trio_pool._exits import exit_error, reraise

from .helpers import assert_no_bookkeeping

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

When = Literal["before", "after"]
WHEN: list[When] = ["before", "after"]


class Odd(BaseException):
    """A BaseException that is neither an interrupt nor a cancellation."""


async def raise_after(seconds: float, error: BaseException) -> None:
    """A job: sleep, then raise ``error``."""
    await trio.sleep(seconds)
    raise error


async def body_fails(when: When, error: BaseException) -> None:
    """The body raises ``error``, at once or after a checkpoint."""
    if when == "after":
        await trio.lowlevel.checkpoint()
    raise error


async def body_fails_as_a_job_crashes(when: When, error: BaseException) -> None:
    """The body raises ``error`` while a job crashes the pool at t=1.

    ``before``: the body waits, shielded, past the crash and raises before it
    reaches a checkpoint; ``after``: the body reaches a checkpoint, is
    cancelled by the crash, and raises ``error`` from its handler.
    """
    if when == "before":
        with trio.CancelScope(shield=True):
            await trio.sleep(2)
        raise error
    try:
        await trio.sleep(2)
    except trio.Cancelled:
        raise error from None
    raise AssertionError("the crash cancels the body")  # pragma: no cover


def the_group(error: BaseException) -> list[BaseException]:
    """The exceptions of the group chained to ``error``, as a list."""
    group = error.__cause__ or error.__context__
    assert isinstance(group, BaseExceptionGroup)
    return list(cast("BaseExceptionGroup[BaseException]", group).exceptions)


# ------------------------------------------------------------------ the pool


@pytest.mark.parametrize("when", WHEN)
async def test_only_the_body_raised_gives_the_body_s_exception_as_itself(
    autojump_clock: trio.abc.Clock, when: When
) -> None:
    error = LookupError("the body's")
    with pytest.raises(LookupError) as caught:
        async with trio_pool.open_pool(2) as pool:
            job = pool.submit_nowait(trio.sleep, 10)
            await body_fails(when, error)
    assert caught.value is error
    assert error.__cause__ is None
    assert job.state is trio_pool.JobState.CANCELLED
    assert_no_bookkeeping(pool)


@pytest.mark.parametrize("when", WHEN)
async def test_a_failing_job_and_the_body_s_exception_gives_the_body_s(
    autojump_clock: trio.abc.Clock, when: When
) -> None:
    # A job's Exception is isolated in its handle: it is not "raised" here.
    error = LookupError("the body's")
    with pytest.raises(LookupError) as caught:
        async with trio_pool.open_pool(2) as pool:
            job = pool.submit_nowait(raise_after, 0, ValueError("the job's"))
            await trio.sleep(1)
            await body_fails(when, error)
    assert caught.value is error
    assert job.state is trio_pool.JobState.FAILED


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("when", WHEN)
async def test_a_job_s_interrupt_comes_out_as_itself_with_the_body_s_as_context(
    autojump_clock: trio.abc.Clock, when: When, interrupt: type[BaseException]
) -> None:
    body_error = LookupError("the body's")
    job_error = interrupt()
    with pytest.raises(interrupt) as caught:
        async with trio_pool.open_pool(2) as pool:
            pool.submit_nowait(raise_after, 1, job_error)
            await body_fails_as_a_job_crashes(when, body_error)
    assert caught.value is job_error
    assert the_group(job_error) == [body_error]
    assert trio.current_time() == (2 if when == "before" else 1)
    assert_no_bookkeeping(pool)


@pytest.mark.parametrize("when", WHEN)
async def test_the_body_s_interrupt_comes_out_as_itself_with_a_job_s_crash_chained(
    autojump_clock: trio.abc.Clock, when: When
) -> None:
    body_error = KeyboardInterrupt()
    job_error = Odd("the job's")
    with pytest.raises(KeyboardInterrupt) as caught:
        async with trio_pool.open_pool(2) as pool:
            pool.submit_nowait(raise_after, 1, job_error)
            await body_fails_as_a_job_crashes(when, body_error)
    assert caught.value is body_error
    assert the_group(body_error) == [job_error]


async def test_the_first_of_two_interrupts_comes_out_the_other_chained(
    autojump_clock: trio.abc.Clock,
) -> None:
    first, second = KeyboardInterrupt("first"), SystemExit("second")
    with pytest.raises(KeyboardInterrupt) as caught:
        async with trio_pool.open_pool(2) as pool:
            pool.submit_nowait(raise_after, 1, second)
            await body_fails_as_a_job_crashes("before", first)
    assert caught.value is first
    assert the_group(first) == [second]


@pytest.mark.parametrize("when", WHEN)
async def test_a_job_s_other_base_exception_alone_gives_pool_crashed(
    autojump_clock: trio.abc.Clock, when: When
) -> None:
    job_error = Odd("the job's")
    with pytest.raises(trio_pool.PoolCrashed, match="crashed: Odd") as caught:
        async with trio_pool.open_pool(2, name="p") as pool:
            job = pool.submit_nowait(raise_after, 1, job_error)
            if when == "after":
                await trio.sleep(5)
    assert type(caught.value) is trio_pool.PoolCrashed
    assert isinstance(caught.value, trio_pool.PoolError)
    assert the_group(caught.value) == [job_error]
    assert job.state is trio_pool.JobState.FAILED
    assert_no_bookkeeping(pool)


@pytest.mark.parametrize("when", WHEN)
async def test_the_body_s_exception_and_a_job_s_crash_give_pool_crashed(
    autojump_clock: trio.abc.Clock, when: When
) -> None:
    body_error, job_error = LookupError("the body's"), Odd("the job's")
    with pytest.raises(trio_pool.PoolCrashed) as caught:
        async with trio_pool.open_pool(2) as pool:
            pool.submit_nowait(raise_after, 1, job_error)
            await body_fails_as_a_job_crashes(when, body_error)
    assert the_group(caught.value) == [body_error, job_error]  # the body's first


async def test_two_crashing_jobs_give_the_same_type_as_one(
    autojump_clock: trio.abc.Clock,
) -> None:
    errors = [Odd("one"), Odd("two")]

    async def crash_together(error: BaseException, both: trio.Event) -> None:
        with trio.CancelScope(shield=True):  # both raise, whoever is first
            await both.wait()
        raise error

    both = trio.Event()
    with pytest.raises(trio_pool.PoolCrashed) as caught:
        async with trio_pool.open_pool(2) as pool:
            for error in errors:
                pool.submit_nowait(crash_together, error, both)
            await trio.testing.wait_all_tasks_blocked()
            both.set()
    assert sorted(the_group(caught.value), key=str) == errors


async def test_an_outside_cancellation_alone_is_caught_by_its_scope(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.move_on_after(1) as scope:
        async with trio_pool.open_pool(2) as pool:
            job = pool.submit_nowait(trio.sleep, 10)
    assert scope.cancelled_caught
    assert job.state is trio_pool.JobState.CANCELLED


async def test_an_outside_cancellation_and_a_crash_give_pool_crashed(
    autojump_clock: trio.abc.Clock,
) -> None:
    job_error = Odd("the job's")

    async def crash_when_cancelled() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            raise job_error from None

    with pytest.raises(trio_pool.PoolCrashed) as caught:
        with trio.move_on_after(1):
            async with trio_pool.open_pool(2) as pool:
                pool.submit_nowait(crash_when_cancelled)
                await trio.sleep(10)
    assert the_group(caught.value) == [job_error]  # never the pool's Cancelled


# ------------------------------------------------------------------- the map


async def items_then(error: BaseException) -> AsyncIterator[int]:
    """An async source: one item, then ``error`` a second later."""
    yield 1
    await trio.sleep(1)
    raise error


@pytest.mark.parametrize("when", WHEN)
async def test_map_only_the_body_raised_gives_it_as_itself(
    autojump_clock: trio.abc.Clock, when: When
) -> None:
    error = LookupError("the body's")
    async with trio_pool.open_pool(2) as pool:
        with pytest.raises(LookupError) as caught:
            async with pool.map(trio.sleep, [1, 2, 3]) as results:
                await body_fails(when, error)
        assert caught.value is error
        async for _ in results:  # the map is over
            raise AssertionError("nothing left")  # pragma: no cover


@pytest.mark.parametrize("when", WHEN)
async def test_map_source_crash_and_the_body_s_exception_give_pool_crashed(
    autojump_clock: trio.abc.Clock, when: When
) -> None:
    body_error, source_error = LookupError("the body's"), Odd("the source's")
    async with trio_pool.open_pool(2) as pool:
        with pytest.raises(trio_pool.PoolCrashed, match="map") as caught:
            async with pool.map(trio.sleep, items_then(source_error)):
                await body_fails_as_a_job_crashes(when, body_error)
    assert the_group(caught.value) == [body_error, source_error]


async def test_map_source_crash_alone_gives_pool_crashed(
    autojump_clock: trio.abc.Clock,
) -> None:
    source_error = Odd("the source's")
    async with trio_pool.open_pool(2) as pool:
        with pytest.raises(trio_pool.PoolCrashed) as caught:
            async with pool.map(trio.sleep, items_then(source_error)):
                await trio.sleep(10)
    assert the_group(caught.value) == [source_error]


@pytest.mark.parametrize("when", WHEN)
async def test_map_source_interrupt_comes_out_as_itself(
    autojump_clock: trio.abc.Clock, when: When
) -> None:
    body_error, source_error = LookupError("the body's"), KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt) as caught:
        async with (
            trio_pool.open_pool(2) as pool,
            pool.map(trio.sleep, items_then(source_error)),
        ):
            await body_fails_as_a_job_crashes(when, body_error)
    assert caught.value is source_error
    assert the_group(source_error) == [body_error]


# ----------------------------------------------------------- the helper alone


def test_exit_error_rows() -> None:
    body, odd, interrupt = LookupError("b"), Odd("o"), SystemExit(3)
    cancelled: BaseException = trio.Cancelled._create()  # pyright: ignore[reportPrivateUsage]
    assert exit_error(None, [], block="b") is None
    assert exit_error(body, [], block="b") is body
    assert exit_error(body, [body, cancelled], block="b") is body  # once
    assert exit_error(None, [cancelled], block="b") is cancelled
    assert exit_error(cancelled, [cancelled], block="b") is cancelled
    crash = exit_error(cancelled, [odd], block="b")
    assert isinstance(crash, trio_pool.PoolCrashed)
    assert the_group(crash) == [odd]  # the body's cancellation: no news
    internal = RuntimeError("a bug in a worker")
    crash = exit_error(None, [internal], block="b")
    assert isinstance(crash, trio_pool.PoolCrashed)
    assert the_group(crash) == [internal]
    nested = BaseExceptionGroup("g", [odd, BaseExceptionGroup("h", [interrupt])])
    assert exit_error(body, [nested], block="b") is interrupt
    assert [type(e) for e in the_group(interrupt)] == [LookupError, Odd]
    ki, lookup = KeyboardInterrupt(), LookupError("in the body's group")
    body_group = BaseExceptionGroup("the body's", [lookup, ki])
    assert exit_error(body_group, [odd], block="b") is ki  # found in the body
    rest = the_group(ki)
    assert rest[1:] == [odd]
    assert isinstance(rest[0], BaseExceptionGroup)
    assert list(cast("BaseExceptionGroup[BaseException]", rest[0]).exceptions) == [
        lookup
    ]  # the interrupt is not chained to itself


def test_exit_error_makes_the_block_s_own_crash_type() -> None:
    class Mine(trio_pool.PoolCrashed):
        pass

    assert type(exit_error(None, [Odd()], block="b", crashed=Mine)) is Mine


def test_reraise_keeps_the_chain_that_exit_error_set() -> None:
    handled, interrupt = LookupError("handled"), KeyboardInterrupt()
    error = exit_error(handled, [interrupt], block="b")
    assert error is interrupt
    assert error is not None
    with pytest.raises(KeyboardInterrupt) as caught:
        try:
            raise handled
        except LookupError:
            reraise(error)  # a plain raise here would chain `handled` instead
    assert the_group(caught.value) == [handled]
