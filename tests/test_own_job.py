"""The own-job rule follows the tasks, not a context variable (issue 17, finding 3).

Inside one of a pool's jobs (or a task one of them started in a nursery of
its own), waiting on the pool could wait for itself: `Pool.submit` on a full
pool raises `PoolOverloaded` at once and `Pool.join` raises `RuntimeError`.
A task a job starts in a nursery outside the pool is not inside the job, and
a job of a pool opened inside another pool's job is inside both.
"""

from __future__ import annotations

import pytest
import trio

import trio_pool

from .helpers import assert_balanced


async def test_a_task_a_job_starts_outside_the_pool_may_wait_on_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    results: list[str] = []
    async with trio.open_nursery() as outside:

        async def helper(pool: trio_pool.Pool) -> None:
            # The queue is full: this waits for room, as any outside task does.
            job = await pool.submit(trio.sleep, 1)
            await job.result()
            await pool.join()  # not inside a job: it may wait
            results.append("helper done")

        async with trio_pool.open_pool(1, capacity=1) as pool:

            async def starter() -> None:
                outside.start_soon(helper, pool)
                await trio.sleep(1)

            await pool.submit(starter)
            await pool.submit(trio.sleep, 1)  # the queue is full now
            await pool.join()
            assert_balanced(pool)
    assert results == ["helper done"]


async def test_a_task_a_job_starts_in_its_own_nursery_is_inside_the_job(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=0) as pool:
        seen: list[type[BaseException]] = []

        async def child() -> None:
            with pytest.raises(trio_pool.PoolOverloaded):
                await pool.submit(trio.sleep, 1)
            with pytest.raises(RuntimeError, match="inside one of its own jobs"):
                await pool.join()
            seen.append(RuntimeError)

        async def job() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(child)

        await pool.run(job)
        assert seen == [RuntimeError]


async def test_a_job_of_an_inner_pool_is_inside_the_outer_pools_job(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=0) as outer:
        outcomes: list[str] = []

        async def inner_job() -> None:
            # The outer pool's one worker runs the job that opened this pool:
            # waiting for room there would wait for itself.
            with trio.fail_after(10):
                with pytest.raises(trio_pool.PoolOverloaded) as info:
                    await outer.submit(trio.sleep, 1)
            assert type(info.value) is trio_pool.PoolOverloaded  # not a timeout
            assert info.value.reason == "own_job"
            outcomes.append("refused at once")

        async def outer_job() -> None:
            async with trio_pool.open_pool(1) as inner:
                await inner.run(inner_job)

        await outer.run(outer_job)
        assert outcomes == ["refused at once"]
        assert trio.current_time() == 0


# ---- issue 17: a thread the job waits for, and a system task it starts


@pytest.mark.parametrize("how", ["trio_token", "abandon_on_cancel"])
async def test_a_thread_the_job_waits_for_is_inside_the_job(how: str) -> None:
    """`trio.from_thread.run` with a token (or from a thread the job may
    abandon) runs `submit` in a system task, not in the job's task; the job
    waits for the thread, so waiting there for room waits for the job itself.
    (Real time: the thread runs; ``submit_timeout`` only bounds a failure.)"""
    token = trio.lowlevel.current_trio_token()
    async with trio_pool.open_pool(1, capacity=0, submit_timeout=30) as pool:

        def in_thread() -> str:
            kwargs = {"trio_token": token} if how == "trio_token" else {}
            try:
                trio.from_thread.run(pool.submit, trio.sleep, 1, **kwargs)
            except trio_pool.PoolOverloaded as exc:
                return str(exc)
            return "accepted"  # pragma: no cover (the failure)

        async def job() -> str:
            return await trio.to_thread.run_sync(
                in_thread, abandon_on_cancel=how == "abandon_on_cancel"
            )

        message = await pool.run(job)
        assert "inside one of its own jobs" in message, message
        assert_balanced(pool)


async def test_a_system_task_a_job_starts_is_not_inside_the_job(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Like a task in a nursery outside the pool: the job does not wait for
    it, so it may wait for room (and gets it when the job ends)."""
    done = trio.Event()
    async with trio_pool.open_pool(1, capacity=0) as pool:

        async def system_task() -> None:
            job = await pool.submit(trio.sleep, 1)  # waits for the job below
            await job.result()
            done.set()

        async def starter() -> None:
            trio.lowlevel.spawn_system_task(system_task)
            await trio.sleep(1)

        await pool.run(starter)
        await done.wait()
        assert trio.current_time() == 2
        assert_balanced(pool)
