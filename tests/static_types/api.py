"""The types that mypy and pyright infer for the public API.

Checked by ``nox -s typing`` (both checkers, strict); pytest never collects
this module, and nothing calls its functions. Each ``assert_type`` states what
a user's editor shows; each ``type: ignore`` marks a call that must stay an
error (both checkers report an ignore comment that is no longer needed).
"""

# pyright: reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Literal

import coredis
import outcome
from typing_extensions import assert_type

import trio_pool
import trio_pool.redis


async def double(number: int) -> int:
    return 2 * number


async def greet(greeting: str, name: str, *, shout: bool = False) -> str:
    text = f"{greeting}, {name}"
    return text.upper() if shout else text


async def nothing() -> None:
    pass


def plain(number: int) -> int:
    return number


async def the_pool() -> None:
    assert_type(trio_pool.open_pool(4), AbstractAsyncContextManager[trio_pool.Pool])
    async with trio_pool.open_pool(4, capacity=8, max_workers=16) as pool:
        assert_type(pool, trio_pool.Pool)
        assert_type(pool.name, str)
        assert_type(pool.statistics(), trio_pool.PoolStatistics)
        assert_type(pool.statistics().queued, int)
        assert_type(await pool.join(), None)
        assert_type(await pool.wait_for_room(), None)
        assert_type(pool.close(), None)
        assert_type(await pool.shutdown(grace_period=1.0), None)
        assert_type(pool.resize(2), None)
        assert_type(pool.resize(2, max_workers=8), None)
        pool.resize(2, 8)  # type: ignore[call-arg]  # keyword-only
    assert_type(
        trio_pool.open_pool(4, idle_timeout=None),
        AbstractAsyncContextManager[trio_pool.Pool],
    )


async def errors() -> None:
    try:
        pass
    except trio_pool.PoolOverloaded as error:
        assert_type(
            error.reason,
            Literal["no_room", "submit_timeout", "own_job", "deadline"],
        )
    except trio_pool.PoolCrashed as crash:
        assert_type(crash.__cause__, BaseException | None)


async def forwarding(
    pool: trio_pool.Pool,
    timeout: float | trio_pool.UsePoolDefault | None = trio_pool.USE_POOL_DEFAULT,
) -> int:
    # A wrapper passes "the pool's default" on, typed.
    assert_type(
        trio_pool.USE_POOL_DEFAULT, Literal[trio_pool.UsePoolDefault.USE_POOL_DEFAULT]
    )
    job = await pool.submit(double, 1, timeout=timeout)
    pool.submit_nowait(double, 1, timeout=timeout)
    async with pool.map(double, [1], timeout=timeout) as results:
        async for _ in results:
            pass
    return await pool.run(double, 1, timeout=trio_pool.USE_POOL_DEFAULT) + (
        await job.result()
    )


async def submitting(pool: trio_pool.Pool) -> None:
    # The job's type comes from the function's return type; positional
    # arguments are typed as trio's start_soon types them.
    assert_type(await pool.submit(double, 21), trio_pool.Job[int])
    assert_type(await pool.submit(greet, "hello", "bob"), trio_pool.Job[str])
    assert_type(await pool.submit(nothing), trio_pool.Job[None])
    assert_type(
        await pool.submit(double, 1, name="x", timeout=2.0, key="host", shed=True),
        trio_pool.Job[int],
    )
    assert_type(pool.submit_nowait(double, 21), trio_pool.Job[int])
    assert_type(pool.submit_nowait(greet, "hi", "ann"), trio_pool.Job[str])
    assert_type(await pool.run(double, 21), int)
    assert_type(await pool.run(greet, "hi", "ann"), str)
    assert_type(await pool.run(nothing), None)
    # Keyword arguments go through functools.partial.
    shouted = functools.partial(greet, shout=True)
    assert_type(await pool.run(shouted, "hi", "ann"), str)

    await pool.submit(double, "21")  # type: ignore[arg-type]
    await pool.submit(double)  # type: ignore[arg-type]
    await pool.submit(double, 1, 2)  # type: ignore[arg-type]
    pool.submit_nowait(greet, "hi")  # type: ignore[arg-type]
    await pool.run(double, None)  # type: ignore[arg-type]
    await pool.submit(plain, 1)  # type: ignore[arg-type]


async def jobs(pool: trio_pool.Pool) -> None:
    job = await pool.submit(double, 21)
    assert_type(await job.result(), int)
    assert_type(await job.wait(), outcome.Outcome[int])
    assert_type(job.state, trio_pool.JobState)
    assert_type(job.name, str)
    assert_type(job.done, bool)
    assert_type(job.cancel(), None)
    assert_type(job.submitted_at, float | None)
    assert_type(job.run_duration, float | None)


async def mapping(pool: trio_pool.Pool) -> None:
    # What map() returns is only an async context manager (issue 20): the
    # results come from its __aenter__.
    assert_type(
        pool.map(double, [1, 2, 3]),
        AbstractAsyncContextManager[trio_pool.MapResults[int]],
    )
    assert_type(
        pool.map(double, range(3), ordered=False),
        AbstractAsyncContextManager[trio_pool.MapResults[int]],
    )
    assert_type(
        pool.map(double, [1, 2], outcomes=False),
        AbstractAsyncContextManager[trio_pool.MapResults[int]],
    )
    assert_type(
        pool.map(double, [1, 2], outcomes=True),
        AbstractAsyncContextManager[trio_pool.MapResults[outcome.Outcome[int]]],
    )
    flag = bool(len("chosen at run time"))
    assert_type(
        pool.map(double, [1, 2], outcomes=flag),
        AbstractAsyncContextManager[trio_pool.MapResults[int]]
        | AbstractAsyncContextManager[trio_pool.MapResults[outcome.Outcome[int]]],
    )
    async with pool.map(double, [1, 2, 3]) as results:
        assert_type(results, trio_pool.MapResults[int])
        async for value in results:
            assert_type(value, int)
    async with pool.map(double, [1, 2, 3], outcomes=True) as outcomes:
        async for each in outcomes:
            assert_type(each, outcome.Outcome[int])
            assert_type(each.unwrap(), int)
    assert_type(
        pool.map(double, numbers()),
        AbstractAsyncContextManager[trio_pool.MapResults[int]],
    )
    # An async lambda cannot be written; one returning a coroutine can.
    assert_type(
        pool.map(lambda n: double(n), [1]),
        AbstractAsyncContextManager[trio_pool.MapResults[int]],
    )

    pool.map(double, ["1"])  # type: ignore[arg-type]
    pool.map(greet, ["hi"])  # type: ignore[arg-type]
    pool.map(plain, [1])  # type: ignore[arg-type]
    # The documented misuse is a type error:
    async for _ in pool.map(double, [1]):  # type: ignore[attr-defined]
        pass


async def numbers() -> AsyncIterator[int]:
    yield 1


def host_of(number: int) -> str:
    return str(number)


async def grouping_and_priorities(pool: trio_pool.Pool) -> None:
    assert_type(pool.group(), AbstractAsyncContextManager[trio_pool.JobGroup])
    async with pool.group(fail_fast=False, name="request") as group:
        assert_type(group, trio_pool.JobGroup)
        assert_type(await group.submit(double, 21), trio_pool.Job[int])
        assert_type(group.submit_nowait(greet, "hi", "ann"), trio_pool.Job[str])
        assert_type(await group.run(double, 1, key="k", priority=2), int)
        await group.submit(double, "21")  # type: ignore[arg-type]
    assert_type(await pool.submit(double, 1, priority=-1), trio_pool.Job[int])
    assert_type(
        pool.map(double, [1], key=host_of),
        AbstractAsyncContextManager[trio_pool.MapResults[int]],
    )
    assert_type(
        pool.map(double, [1], key=host_of, priority=3, outcomes=True),
        AbstractAsyncContextManager[trio_pool.MapResults[outcome.Outcome[int]]],
    )
    pool.map(double, [1], key=greet)  # type: ignore[arg-type]


async def completing(pool: trio_pool.Pool) -> None:
    ints = [await pool.submit(double, n) for n in range(3)]
    assert_type(trio_pool.as_completed(ints), trio_pool.AsCompleted[int])
    async with trio_pool.as_completed(ints) as finished:
        assert_type(finished, trio_pool.AsCompleted[int])
        async for job in finished:
            assert_type(job, trio_pool.Job[int])
            assert_type(await job.result(), int)
    assert_type(trio_pool.as_completed(job for job in ints), trio_pool.AsCompleted[int])


async def handle(delivery: trio_pool.redis.Delivery) -> None:
    pass


async def consuming(pool: trio_pool.Pool, client: coredis.Redis[bytes]) -> None:
    opened = trio_pool.redis.open_stream_consumer(
        pool, client, handle, stream="s", group="g", name="c", create_group="new"
    )
    assert_type(opened, AbstractAsyncContextManager[trio_pool.redis.StreamConsumer])
    async with opened as consumer:
        assert_type(consumer.name, str)
        assert_type(consumer.close(), None)
        assert_type(await consumer.join(), None)
        stats = consumer.statistics()
        assert_type(stats, trio_pool.redis.ConsumerStatistics)
        assert_type(stats.closed, bool)
        assert_type(stats.timed_out, int)
    # stream, group and name only by keyword; create_group says from where
    trio_pool.redis.open_stream_consumer(pool, client, "s", "g", "c", handle)  # type: ignore[call-arg, arg-type]
    trio_pool.redis.open_stream_consumer(
        pool,
        client,
        handle,
        stream="s",
        group="g",
        name="c",
        create_group=True,  # type: ignore[arg-type]
    )
