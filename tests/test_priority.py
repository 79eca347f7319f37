"""Priorities: higher first, first in first out within a level."""

# pyright: reportPrivateUsage=false, reportPossiblyUnboundVariable=false

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

import trio_pool
from trio_pool._core import PoolCore
from trio_pool._priority import PrioritizedCore, PriorityJobQueue

from .helpers import assert_balanced, assert_no_bookkeeping


def recorder(order: list[str]) -> Callable[[str], Awaitable[str]]:
    """A job that notes its tag as it starts, then takes a second."""

    async def job(tag: str) -> str:
        order.append(tag)
        await trio.sleep(1)
        return tag

    return job


async def test_higher_first_fifo_within_a_level(autojump_clock: trio.abc.Clock) -> None:
    order: list[str] = []
    job = recorder(order)
    async with trio_pool.open_pool(1) as pool:
        pool.submit_nowait(job, "running")
        for tag, priority in [("a", 0), ("b", 5), ("c", -1), ("d", 5), ("e", 9)]:
            pool.submit_nowait(job, tag, priority=priority)
        await pool.submit(job, "f", priority=5)
        assert await pool.run(job, "g", priority=10) == "g"  # queued first
        assert_balanced(pool)
    assert order == ["running", "g", "e", "b", "d", "f", "a", "c"]
    assert_no_bookkeeping(pool)


async def test_a_pool_without_priorities_stays_plain(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1) as pool:
        for _ in range(3):
            pool.submit_nowait(trio.sleep, 1, priority=0)
        assert type(pool._core) is PoolCore
        pool.submit_nowait(trio.sleep, 1, priority=1)
        assert isinstance(pool._core, PrioritizedCore)
        assert_balanced(pool)


@pytest.mark.parametrize("bad", [1.5, True, "1", None])
async def test_priority_must_be_an_int(bad: object) -> None:
    async with trio_pool.open_pool(1) as pool:
        with pytest.raises(TypeError, match=f"priority must be an int, not {bad!r}"):
            pool.submit_nowait(trio.sleep, 0, priority=bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="priority must be an int"):
            await pool.submit(trio.sleep, 0, priority=bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="priority must be an int"):
            pool.map(trio.sleep, [0], priority=bad)  # type: ignore[call-overload]
        async with pool.group() as group:
            with pytest.raises(TypeError, match="priority must be an int"):
                group.submit_nowait(trio.sleep, 0, priority=bad)  # type: ignore[arg-type]
        assert type(pool._core) is PoolCore
        assert pool.statistics().submitted == 0


async def test_a_keys_jobs_set_aside_go_by_priority(
    autojump_clock: trio.abc.Clock,
) -> None:
    order: list[str] = []
    job = recorder(order)
    async with trio_pool.open_pool(4, per_key_limit=1) as pool:
        pool.submit_nowait(job, "k0", key="k")
        pool.submit_nowait(job, "k1", key="k")  # set aside before priorities
        pool.submit_nowait(job, "k2", key="k", priority=-1)
        pool.submit_nowait(job, "k3", key="k", priority=2)
        pool.submit_nowait(job, "k4", key="k")
        assert pool.statistics().waiting_for_key == 4
        assert_balanced(pool)
    assert order == ["k0", "k3", "k1", "k4", "k2"]


async def test_blocked_submitters_keep_their_arrival_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    order: list[str] = []
    job = recorder(order)
    async with trio_pool.open_pool(1, capacity=0) as pool:
        pool.submit_nowait(job, "running", priority=1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.submit, job, "low")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(lambda: pool.submit(job, "high", priority=9))
    assert order == ["running", "low", "high"]


async def test_map_and_group_priorities(autojump_clock: trio.abc.Clock) -> None:
    order: list[str] = []
    job = recorder(order)
    async with trio_pool.open_pool(1, capacity=8) as pool:
        async with pool.group() as group:
            group.submit_nowait(job, "running")
            group.submit_nowait(job, "low")
            group.submit_nowait(job, "high", priority=3)
            assert await group.run(job, "top", priority=4) == "top"
            await group.submit(job, "mid", priority=2)
        pool.submit_nowait(job, "busy")  # the worker is busy as the map feeds
        async with pool.map(job, ["m1", "m2"], priority=5) as results:
            pool.submit_nowait(job, "after", priority=1)
            assert [tag async for tag in results] == ["m1", "m2"]
    assert order == [
        *("running", "top", "high", "mid", "low"),
        *("busy", "m1", "m2", "after"),
    ]


async def test_a_job_put_back_goes_first_in_its_level() -> None:
    async def nothing() -> None:
        pass

    async with trio_pool.open_pool(1) as pool:
        core = pool._core
        queue = PriorityJobQueue()
        for priority in (2, 1, 1, 0):
            job = core.make_job(nothing, (), str(priority), None, None)
            job._priority = priority
            queue.push(job)
        back = core.make_job(nothing, (), "back", None, None)
        back._priority = 1
        queue.push_front(back)  # (a worker gave it back after a resize)
        assert [job.name for job in queue] == ["2", "back", "1", "1", "0"]
        assert queue.live == 5


async def test_shedding_counts_only_the_jobs_ahead(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, shed=True) as pool:
        with trio.move_on_after(100):
            await pool.run(trio.sleep, 1)  # measured: jobs take 1 s
            await pool.run(trio.sleep, 1)
        for _ in range(5):
            pool.submit_nowait(trio.sleep, 1)
        with trio.move_on_after(3):
            with pytest.raises(trio_pool.PoolOverloaded):
                pool.submit_nowait(trio.sleep, 1)  # 5 ahead of it: shed
            job = pool.submit_nowait(trio.sleep, 1, priority=1)  # 1 running ahead
        await job.wait()
        assert job.state is trio_pool.JobState.SUCCEEDED


async def test_shedding_counts_only_the_keys_jobs_ahead(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(4, per_key_limit=1, shed=True) as pool:
        with trio.move_on_after(100):
            await pool.run(trio.sleep, 1, key="a")  # measured: jobs take 1 s
            await pool.run(trio.sleep, 1, key="a")
        for _ in range(5):  # one runs, four are set aside for the key
            pool.submit_nowait(trio.sleep, 1, key="a")
        with trio.move_on_after(3):
            with pytest.raises(trio_pool.PoolOverloaded):
                pool.submit_nowait(trio.sleep, 1, key="a")  # 4 set aside ahead
            job = pool.submit_nowait(trio.sleep, 1, key="a", priority=1)
        await job.wait()
        assert job.state is trio_pool.JobState.SUCCEEDED


async def test_a_maps_batch_queues_each_job_in_its_place(
    autojump_clock: trio.abc.Clock,
) -> None:
    # A map of plain jobs queues its batch in one step (`Intake.offer_all`);
    # in a pool with priorities, each job still goes before the lower ones.
    order: list[str] = []
    job = recorder(order)
    async with trio_pool.open_pool(1, capacity=8) as pool:
        pool.submit_nowait(job, "running")
        pool.submit_nowait(job, "low", priority=-1)
        assert isinstance(pool._core, PrioritizedCore)
        async with pool.map(job, ["m1", "m2", "m3"]) as results:
            assert [tag async for tag in results] == ["m1", "m2", "m3"]
        assert_balanced(pool)
    assert order == ["running", "m1", "m2", "m3", "low"]
    assert_no_bookkeeping(pool)
