"""Job timings: submitted, started and finished on Trio's clock."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import trio_pool

from .helpers import assert_balanced, books, sleep_and_return


async def fail_after_sleeping(seconds: float) -> None:
    await trio.sleep(seconds)
    raise ValueError("boom")


async def test_timings_are_exact_under_a_mock_clock(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, timings=True) as pool:
        await trio.sleep(10)
        first = await pool.submit(sleep_and_return, 2)
        second = await pool.submit(fail_after_sleeping, 3)
        assert times(first) == (10, None, None)  # handed over, not run yet
        await trio.testing.wait_all_tasks_blocked()
        assert (first.submitted_at, first.started_at, first.finished_at) == (
            10,
            10,
            None,
        )
        assert durations(first) == (0, None)  # its run is not known yet
        assert durations(second) == (None, None)
        await second.wait()
        assert times(first) == (10, 10, 12)
        assert durations(first) == (0, 2)
        assert times(second) == (10, 12, 15)
        assert durations(second) == (2, 3)
        assert_balanced(pool)


def times(job: trio_pool.Job[Any]) -> tuple[float | None, ...]:
    return (job.submitted_at, job.started_at, job.finished_at)


def durations(job: trio_pool.Job[Any]) -> tuple[float | None, ...]:
    return (job.wait_duration, job.run_duration)


def mean_run(pool: trio_pool.Pool) -> float | None:
    return books(pool).mean_run


async def test_a_job_cancelled_in_the_queue_waited_until_its_cancellation(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, timings=True) as pool:
        pool.submit_nowait(trio.sleep, 5)
        queued = pool.submit_nowait(trio.sleep, 5)
        await trio.sleep(1)
        queued.cancel()
        assert queued.started_at is None
        assert queued.run_duration is None
        assert (queued.finished_at, queued.wait_duration) == (1, 1)


async def test_a_blocking_submit_counts_its_wait_for_room(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=0, timings=True) as pool:
        pool.submit_nowait(trio.sleep, 4)
        job = await pool.submit(trio.sleep, 1)  # waits 4 s for the worker
        await job.wait()
        assert (job.submitted_at, job.started_at, job.finished_at) == (0, 4, 5)


async def test_map_jobs_are_timed(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(2, timings=True) as pool:
        async with pool.map(sleep_and_return, [1, 2, 3], outcomes=True) as results:
            assert len([r async for r in results]) == 3
        assert trio.current_time() == 4  # 3 waits for the first worker


async def test_without_timings_every_timing_stays_none(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, telemetry=False) as pool:
        job = await pool.submit(sleep_and_return, 1)
        await job.wait()
        assert books(pool).timed is False
        assert job.submitted_at is None
        assert job.started_at is None
        assert job.finished_at is None
        assert job.wait_duration is None
        assert job.run_duration is None


async def test_the_moving_average_of_running_times(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, timings=True) as pool:
        assert pool.statistics().submitted == 0
        assert mean_run(pool) is None
        await pool.run(trio.sleep, 8)
        assert mean_run(pool) == 8
        await pool.run(trio.sleep, 16)
        assert mean_run(pool) == 9  # 8 + (16 - 8) / 8
        job = pool.submit_nowait(trio.sleep, 100)
        await trio.testing.wait_all_tasks_blocked()
        job.cancel()  # a cancelled run is not a measure of length
        await job.wait()
        assert mean_run(pool) == 9
        timed = await pool.submit(trio.sleep, 100, timeout=1)
        await timed.wait()
        assert mean_run(pool) == 9 + (1 - 9) / 8  # it did use the worker 1 s


def test_timings_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="timings must be True or False, not 1"):
        trio_pool.open_pool(1, timings=1)  # type: ignore[arg-type]


async def test_telemetry_on_and_timings_off_show_no_timings(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Issue 20: with an SDK configured, the pool reads the clock for its own
    # metrics and spans, but the jobs show no timings unless asked.
    reader = InMemoryMetricReader()
    async with trio_pool.open_pool(
        1,
        tracer_provider=TracerProvider(),
        meter_provider=MeterProvider(metric_readers=[reader]),
    ) as pool:
        job = await pool.submit(sleep_and_return, 1)
        await job.wait()
        assert books(pool).timed is True  # telemetry's own readings
        assert times(job) == (None, None, None)
        assert durations(job) == (None, None)
    data = reader.get_metrics_data()
    assert data is not None  # the durations were recorded all the same
    names = {
        metric.name
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert "trio_pool.job.duration" in names


async def test_a_submit_with_shed_shows_timings_from_then_on(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, telemetry=False) as pool:
        before = await pool.submit(sleep_and_return, 1)
        await before.wait()
        with trio.move_on_after(100):  # a deadline: shedding measures
            shed = await pool.submit(sleep_and_return, 1, shed=True)
            await shed.wait()
            assert times(shed) == (None, 1, 2)  # measured from its submit on
        assert times(before) == (None, None, None)
        after = await pool.submit(sleep_and_return, 1)
        await after.wait()
        assert times(after) == (2, 2, 3)
