"""Dynamic scaling: growing on demand, retiring idle workers, resize."""

# pyright: reportPrivateUsage=false

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from trio._core import _run as trio_run

import trio_pool

from .helpers import check_invariants


def assert_balanced(pool: trio_pool.Pool) -> None:
    s = pool.statistics()
    assert s.submitted == (
        s.queued + s.running + s.succeeded + s.failed + s.timed_out + s.cancelled
    )


async def test_burst_grows_to_exactly_the_load(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(2, max_workers=10, idle_timeout=5) as pool:
        assert pool.statistics().workers == 2
        for _ in range(6):
            await pool.submit(trio.sleep, 1)
        await trio.testing.wait_all_tasks_blocked()
        stats = pool.statistics()
        assert (stats.workers, stats.running, stats.queued) == (6, 6, 0)
        assert (stats.min_workers, stats.max_workers) == (2, 10)
        assert_balanced(pool)


async def test_growth_stops_at_max_and_jobs_queue(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, max_workers=3, capacity=10) as pool:
        for _ in range(8):
            await pool.submit(trio.sleep, 1)
        await trio.testing.wait_all_tasks_blocked()
        stats = pool.statistics()
        assert (stats.workers, stats.running, stats.queued) == (3, 3, 5)
    assert trio.current_time() == 3  # ceil(8 / 3) rounds of one second


async def test_idle_workers_retire_on_time_and_a_new_burst_grows_again(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_pool")
    async with trio_pool.open_pool(1, max_workers=4, idle_timeout=10) as pool:
        for _ in range(4):
            await pool.submit(trio.sleep, 1)
        await trio.sleep(1)  # the jobs end at t=1
        await trio.testing.wait_all_tasks_blocked()
        assert pool.statistics().workers == 4
        await trio.sleep(9.5)  # t=10.5: idle for 9.5 s, nobody retired yet
        assert pool.statistics().workers == 4
        await trio.sleep(1)  # t=11.5: the extra three retired at t=11
        assert pool.statistics().workers == 1
        assert pool.statistics().idle_workers == 1
        jobs = [await pool.submit(trio.sleep, 1) for _ in range(3)]
        await trio.testing.wait_all_tasks_blocked()
        assert pool.statistics().workers == 3
        for job in jobs:
            await job.result()
    assert "retired" in caplog.text
    assert "started a worker" in caplog.text


async def test_retiring_never_drops_or_delays_a_queued_job(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, max_workers=3, idle_timeout=2) as pool:
        first = [await pool.submit(trio.sleep, 1) for _ in range(3)]
        await trio.sleep(2.999)  # just before the extra workers retire
        late = await pool.submit(trio.sleep, 1)
        start = trio.current_time()
        await late.result()
        assert trio.current_time() - start == 1  # started at once
        assert all(job.state is trio_pool.JobState.SUCCEEDED for job in first)


async def test_resize_up_takes_effect_at_once_for_waiting_jobs(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2, capacity=10) as pool:
        for _ in range(6):
            await pool.submit(trio.sleep, 1)
        await trio.testing.wait_all_tasks_blocked()
        assert pool.statistics().running == 2
        pool.resize(4, max_workers=8)
        await trio.testing.wait_all_tasks_blocked()
        stats = pool.statistics()
        assert (stats.workers, stats.running, stats.queued) == (6, 6, 0)
        assert (stats.min_workers, stats.max_workers) == (4, 8)


async def test_resize_down_never_cancels_a_running_job(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(6) as pool:
        jobs = [await pool.submit(trio.sleep, n) for n in range(1, 5)]
        await trio.testing.wait_all_tasks_blocked()
        pool.resize(2)  # 2 idle workers retire now, busy ones as they finish
        await trio.testing.wait_all_tasks_blocked()
        assert pool.statistics().workers == 4
        assert pool.statistics().max_workers == 2
        await trio.sleep(2.5)
        assert pool.statistics().workers == 2
        for job in jobs:
            await job.result()
        assert pool.statistics().workers == 2
        assert all(job.state is trio_pool.JobState.SUCCEEDED for job in jobs)


async def test_resize_means_what_open_pool_means(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Issue 20: max_workers=None is a fixed pool, as in open_pool; it was
    # "keep the current maximum" here.
    async with trio_pool.open_pool(1, max_workers=4) as pool:
        pool.resize(2, max_workers=4)
        stats = pool.statistics()
        assert (stats.min_workers, stats.max_workers) == (2, 4)
        await trio.testing.wait_all_tasks_blocked()
        assert pool.statistics().workers == 2
        pool.resize(3)
        stats = pool.statistics()
        assert (stats.min_workers, stats.max_workers) == (3, 3)
        await trio.testing.wait_all_tasks_blocked()
        assert pool.statistics().workers == 3
        with pytest.raises(TypeError):
            pool.resize(3, 4)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


async def test_shutdown_while_scaled_up(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(1, max_workers=5) as pool:
        jobs = [await pool.submit(trio.sleep, 100) for _ in range(5)]
        await trio.testing.wait_all_tasks_blocked()
        assert pool.statistics().workers == 5
        await pool.shutdown(grace_period=1)
        assert all(job.state is trio_pool.JobState.CANCELLED for job in jobs)
        assert trio.current_time() == 1
    assert pool.statistics().workers == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_workers": 1}, ValueError, "max_workers must be >= workers (2), not 1"),
        ({"max_workers": "3"}, TypeError, "max_workers must be an int, not '3'"),
        ({"idle_timeout": -1}, ValueError, "idle_timeout must be >= 0, not -1"),
        ({"idle_timeout": "5"}, TypeError, "idle_timeout must be a number"),
    ],
)
def test_bad_scaling_arguments(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        trio_pool.open_pool(2, **kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


async def test_bad_resize_arguments() -> None:
    async with trio_pool.open_pool(2) as pool:
        with pytest.raises(ValueError, match="workers must be >= 1, not 0"):
            pool.resize(0)
        with pytest.raises(ValueError, match=r"max_workers must be >= workers \(3\)"):
            pool.resize(3, max_workers=2)
        assert pool.statistics().max_workers == 2
    with pytest.raises(trio_pool.PoolClosed):
        pool.resize(3)


@pytest.mark.parametrize("seed", range(60))
def test_a_worker_does_not_retire_while_a_submitter_waits(seed: int) -> None:
    # Found by the state machine: with capacity 0, two idle timers expired as
    # a submitter arrived (no idle worker, no room to grow: it waited); one
    # worker retired, and a later submitter grew the pool and got in first.
    # The scheduler's order decides the race: every seed must keep the order.
    trio_run._r.seed(seed)

    async def main() -> None:
        async with trio_pool.open_pool(
            1, max_workers=2, capacity=0, idle_timeout=1
        ) as pool:
            pool.submit_nowait(trio.sleep, 0)
            pool.submit_nowait(trio.sleep, 0)  # grows the second worker
            await trio.testing.wait_all_tasks_blocked()  # both idle from t=0

            arrived: list[int] = []

            async def submit(me: int) -> None:
                await trio.sleep_until(1)  # as the idle timers expire
                arrived.append(me)  # its offer comes next, in this same step
                await pool.submit(trio.sleep, 0)
                later = len(arrived) - 1 - arrived.index(me)
                waiting = pool.statistics().waiting_submitters
                assert waiting <= later, f"submitter {me} got in before another"

            async with trio.open_nursery() as nursery:
                nursery.start_soon(submit, 1)
                nursery.start_soon(submit, 2)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_idle_timeout_none_keeps_extra_workers(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, max_workers=3, idle_timeout=None) as pool:
        for _ in range(3):
            pool.submit_nowait(trio.sleep, 1)
        await trio.sleep(10**6)
        assert pool.statistics().workers == 3


async def test_a_resize_up_admits_every_blocked_submitter_it_makes_room_for(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each worker a resize starts takes a queued job when it runs, so each
    is room for one more job at once: every blocked submitter that fits is
    admitted in the resize's own step, not one per step (the invariant
    check asserts that no submitter stays blocked while its job fits)."""
    release = trio.Event()

    async def hold() -> None:
        await release.wait()

    async with trio_pool.open_pool(1, capacity=1) as pool:
        await pool.submit(hold)  # runs
        await pool.submit(hold)  # queued: the queue is full
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(pool.submit, hold)
            await trio.testing.wait_all_tasks_blocked()
            assert pool.statistics().waiting_submitters == 3
            pool.resize(4)  # three workers start: room for three more jobs
            assert pool.statistics().waiting_submitters == 0
            check_invariants(pool)
            release.set()
