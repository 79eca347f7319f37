"""trio_pool.as_completed: handles in the order their jobs finish."""

# pyright: reportPrivateUsage=false

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
import trio
import trio.testing

import trio_pool

from .helpers import assert_balanced, sleep_and_return


async def boom(seconds: float) -> None:
    await trio.sleep(seconds)
    raise ValueError("boom")


async def test_handles_come_in_the_order_their_jobs_finish(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(5) as pool:
        jobs = [pool.submit_nowait(sleep_and_return, s, s) for s in (3, 1, 4, 2)]
        failing = pool.submit_nowait(boom, 2.5)
        seen: list[tuple[float, trio_pool.Job[Any]]] = []
        everything: list[trio_pool.Job[Any]] = [*jobs, failing]
        async with trio_pool.as_completed(everything) as finished:
            async for job in finished:
                seen.append((trio.current_time(), job))
        assert [job for _, job in seen] == [jobs[1], jobs[3], failing, jobs[0], jobs[2]]
        assert [t for t, _ in seen] == [1, 2, 2.5, 3, 4]  # each as it finished
        with pytest.raises(ValueError, match="boom"):
            await failing.result()


async def test_jobs_already_done_come_first_in_the_order_given(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2) as pool:
        done = [pool.submit_nowait(sleep_and_return, s) for s in (2, 1)]
        await trio.sleep(3)
        later = pool.submit_nowait(sleep_and_return, 1)
        order = [job async for job in trio_pool.as_completed([later, *done])]
        assert order == [*done, later]


async def test_leaving_early_stops_listening_and_leaves_the_jobs_alone(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(3) as pool:
        jobs = [pool.submit_nowait(sleep_and_return, s) for s in (1, 5, 9)]
        async with trio_pool.as_completed(jobs) as finished:
            async for job in finished:
                assert job is jobs[0]
                break
        assert all(job._on_done is None for job in jobs)  # no listener left
        assert not jobs[1].done
        await pool.join()
        assert all(job.state is trio_pool.JobState.SUCCEEDED for job in jobs)
        assert_balanced(pool)


async def test_two_iterators_over_the_same_jobs_each_see_every_job(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(3) as pool:
        jobs = [pool.submit_nowait(sleep_and_return, s) for s in (3, 1, 2)]
        results: list[list[trio_pool.Job[object]]] = [[], []]

        async def collect(index: int) -> None:
            async with trio_pool.as_completed(jobs) as finished:
                async for job in finished:
                    results[index].append(job)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect, 0)
            nursery.start_soon(collect, 1)
        assert results[0] == results[1] == [jobs[1], jobs[2], jobs[0]]


async def test_one_task_at_a_time_and_cancellation_while_waiting(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1) as pool:
        job = pool.submit_nowait(sleep_and_return, 10)
        finished = trio_pool.as_completed([job])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(finished.__anext__)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await finished.__anext__()
            nursery.cancel_scope.cancel()
        with trio.move_on_after(1):
            await finished.__anext__()
        assert await finished.__anext__() is job  # still listening
        with pytest.raises(StopAsyncIteration):
            await finished.__anext__()


async def test_from_another_thread_it_is_refused(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1) as pool:
        job = pool.submit_nowait(sleep_and_return, 1)
        with pytest.raises(RuntimeError, match="as_completed"):
            await trio.to_thread.run_sync(trio_pool.as_completed, [job])
        assert job._on_done is None


async def test_an_empty_list_ends_at_once() -> None:
    with trio.testing.assert_checkpoints():
        nothing: list[trio_pool.Job[None]] = []
        assert [job async for job in trio_pool.as_completed(nothing)] == []


async def test_a_refused_call_registers_nothing(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(1) as pool:
        pending = pool.submit_nowait(sleep_and_return, 5)
        with pytest.raises(TypeError, match="Job handles"):
            trio_pool.as_completed([pending, None])  # type: ignore[list-item]
        assert pending._on_done is None
        await pending.wait()  # its pool finishes it as if nothing happened
        assert_balanced(pool)


async def test_a_source_that_cancels_a_job_it_already_gave(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2) as pool:
        first = pool.submit_nowait(sleep_and_return, 5)
        second = pool.submit_nowait(sleep_and_return, 1)

        def source() -> Any:
            yield first
            first.cancel()  # done before as_completed has read the list
            yield second

        order = [job async for job in trio_pool.as_completed(source())]
        assert order == [first, second]
        await pool.join()
        assert_balanced(pool)


async def test_a_job_listed_twice_comes_once_and_closing_leaves_no_listener(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2) as pool:
        job = pool.submit_nowait(sleep_and_return, 5)
        done = pool.submit_nowait(sleep_and_return, 0)
        await done.wait()
        assert [j async for j in trio_pool.as_completed([done, done, job, job])] == [
            done,
            job,
        ]
        later = pool.submit_nowait(sleep_and_return, 5)
        one, two = trio_pool.as_completed([later]), trio_pool.as_completed([later])
        two.close()
        assert later._on_done is not None  # `one` still listens
        one.close()
        assert later._on_done is None


async def test_a_yielded_job_is_not_kept_alive_by_the_iterator(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Found by review: the iterator held every job until it was closed, and
    # with it each job's value (CPython treats the same in asyncio as a bug).
    async with trio_pool.open_pool(2) as pool:
        jobs = [await pool.submit(sleep_and_return, n, n) for n in (1, 2)]
        refs = [weakref.ref(job) for job in jobs]
        async with trio_pool.as_completed(jobs) as finished:
            del jobs
            async for job in finished:
                assert await job.result() in (1, 2)
                del job
                gc.collect()
                assert refs[0]() is None  # the first one, finished and yielded
