"""Callables as trio takes them: whatever returns a coroutine runs as a job;
everything else gets a message that names what it is and what to write."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
import trio

import trio_pool


async def double(n: int) -> int:
    await trio.lowlevel.checkpoint()
    return 2 * n


async def numbers() -> AsyncIterator[int]:
    yield 1  # pragma: no cover


def sync_function(n: int) -> int:
    return n


def doubling(n: int) -> Coroutine[Any, Any, int]:
    """A sync function that returns a coroutine, as trio's start_soon takes."""
    return double(n)


class Doubler:
    async def __call__(self, n: int) -> int:
        return await double(n)


async def test_a_lambda_or_partial_returning_a_coroutine_runs_everywhere() -> None:
    async with trio_pool.open_pool(2) as pool:
        by_lambda = await pool.submit(lambda: double(1))
        by_partial = pool.submit_nowait(functools.partial(doubling, 2))
        by_run = await pool.run(lambda: double(3))
        by_instance = await pool.run(Doubler(), 7)
        async with pool.map(lambda n: double(n), [4, 5]) as results:
            mapped = [value async for value in results]
        assert await by_lambda.result() == 2
        assert await by_partial.result() == 4
        assert by_run == 6
        assert by_instance == 14
        assert mapped == [8, 10]
        assert by_lambda.name.endswith("<lambda>")  # the function's own name
        assert by_partial.name.endswith("doubling")
        stats = pool.statistics()
    assert (stats.succeeded, stats.failed) == (6, 0)


async def test_a_sync_function_fails_its_job_with_the_fix() -> None:
    async with trio_pool.open_pool(1) as pool:
        not_async: Any = sync_function  # as an untyped caller would pass it
        job = await pool.submit(not_async, 5)
        with pytest.raises(TypeError) as info:
            await job.result()
        assert job.state is trio_pool.JobState.FAILED
        other = await pool.run(double, 1)  # the pool goes on
    message = str(info.value)
    assert "submit() expected an async function" in message
    assert "is a sync function: it returned 5, not a coroutine" in message
    assert "pool.submit(trio.to_thread.run_sync, fn, ...)" in message
    assert other == 2


async def test_a_lambda_returning_something_else_fails_its_job_in_map() -> None:
    async with trio_pool.open_pool(1) as pool:
        with pytest.raises(TypeError, match="it returned 3, not a coroutine"):
            identity: Any = sync_function
            async with pool.map(identity, [3]) as results:
                async for _ in results:
                    pass  # pragma: no cover
        with pytest.raises(TypeError, match="is an async generator function"):
            gives_a_generator: Any = lambda: numbers()  # noqa: E731
            await pool.run(gives_a_generator)


@pytest.mark.parametrize(
    ("fn", "what"),
    [
        (numbers, "is an async generator function: a job runs to one result"),
        (functools.partial(numbers), "is an async generator function"),
        (len, "is a sync builtin; to run a sync function in a thread"),
        (dict, "is a class; to run a sync function in a thread"),
        (3, "expected an async function, not 3"),
    ],
)
async def test_what_cannot_be_a_job_is_refused_at_once(fn: Any, what: str) -> None:
    async with trio_pool.open_pool(1) as pool:
        with pytest.raises(TypeError, match=what):
            pool.submit_nowait(fn)
        with pytest.raises(TypeError, match=what):
            await pool.submit(fn)
        with pytest.raises(TypeError, match=what):
            await pool.run(fn)
        with pytest.raises(TypeError, match=what):
            pool.map(fn, [1])
        assert pool.statistics().submitted == 0


async def test_a_coroutine_object_names_the_fix_in_each_method() -> None:
    async with trio_pool.open_pool(1) as pool:
        with pytest.raises(TypeError, match="got a coroutine object") as info:
            pool.submit_nowait(double(1))  # type: ignore[arg-type]
        assert "pool.submit_nowait(double, ...)  # correct!" in str(info.value)
        with pytest.raises(TypeError, match="got a coroutine object") as info:
            await pool.submit(double(1))  # type: ignore[arg-type]
        assert "pool.submit(double, ...)  # correct!" in str(info.value)
        with pytest.raises(TypeError, match="got a coroutine object") as info:
            pool.map(double(1), [1])  # type: ignore[call-overload]
        assert "pool.map(double, ...)  # correct!" in str(info.value)
