"""Regressions of issue 9, each written to find its whole class.

Where a bug needed one moment in a schedule, the test tries every moment:
it lets the tasks run one scheduling step at a time (the schedule-point
interval lowered so workers pass their periodic schedule points often) and
acts after each step, checking the core's invariants every time.
"""

# pyright: reportPrivateUsage=false

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import outcome
import pytest
import trio
import trio.lowlevel
import trio.testing
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

import trio_pool
from trio_pool import _checks, _core, _waiters

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from .helpers import assert_balanced, assert_no_bookkeeping, books, check_invariants


@pytest.fixture
def small_interval(monkeypatch: pytest.MonkeyPatch) -> int:
    """Pools opened in the test pass a schedule point every 2 calls/jobs."""
    monkeypatch.setattr(_core, "YIELD_EVERY", 2)
    return 2


async def step() -> None:
    """Let the other tasks run one scheduling batch."""
    await trio.lowlevel.cancel_shielded_checkpoint()


async def noop() -> None:
    pass


async def nap(seconds: float) -> float:
    await trio.sleep(seconds)
    return seconds


# ------------------------------------------------ 1. a job in limbo at a step


@pytest.mark.parametrize("steps", range(12))
async def test_cancel_at_every_step_never_runs_a_cancelled_job(
    small_interval: int, steps: int, autojump_clock: trio.abc.Clock
) -> None:
    ran: list[int] = []

    async def record(n: int) -> None:
        ran.append(n)

    async with trio_pool.open_pool(1, capacity=20) as pool:
        jobs = [pool.submit_nowait(record, n) for n in range(12)]
        for _ in range(steps):
            await step()
            assert_balanced(pool)
        cancelled = [n for n, job in enumerate(jobs) if not job.done]
        for n in cancelled:
            jobs[n].cancel()
            assert jobs[n].state in (
                trio_pool.JobState.CANCELLED,
                trio_pool.JobState.RUNNING,
            )
            assert_balanced(pool)
    never_started = {
        n for n in cancelled if jobs[n].state is trio_pool.JobState.CANCELLED
    }
    assert not never_started & set(ran)  # a cancelled job never runs
    assert_no_bookkeeping(pool)


@pytest.mark.parametrize("steps", range(10))
async def test_shutdown_grace_period_at_every_step(
    small_interval: int, steps: int, autojump_clock: trio.abc.Clock
) -> None:
    async with trio_pool.open_pool(1, capacity=20) as pool:
        jobs: list[trio_pool.Job[Any]] = [pool.submit_nowait(noop) for _ in range(4)]
        jobs.append(pool.submit_nowait(nap, 100))
        jobs += [pool.submit_nowait(noop) for _ in range(4)]
        for _ in range(steps):
            await step()
        start = trio.current_time()
        await pool.shutdown(grace_period=1)
        assert trio.current_time() - start <= 1  # the sleeper was found
        assert all(job.done for job in jobs)
        assert_balanced(pool)
    assert_no_bookkeeping(pool)


@pytest.mark.parametrize("steps", range(10))
async def test_outside_cancellation_at_every_step(
    small_interval: int, steps: int, autojump_clock: trio.abc.Clock
) -> None:
    jobs: list[trio_pool.Job[Any]] = []
    pools: list[trio_pool.Pool] = []
    with trio.CancelScope() as scope:
        async with trio_pool.open_pool(1, capacity=20) as pool:
            pools.append(pool)
            jobs += [pool.submit_nowait(noop) for _ in range(3)]
            jobs.append(pool.submit_nowait(nap, 100))
            jobs += [pool.submit_nowait(noop) for _ in range(3)]
            for _ in range(steps):
                await step()
            scope.cancel()
            await trio.sleep_forever()
    assert all(job.done for job in jobs)
    assert_no_bookkeeping(pools[0])


# --------------------------------------- 2. a job handed to a woken worker


async def test_cancel_a_job_handed_to_a_woken_worker(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2, capacity=1) as pool:
        await trio.testing.wait_all_tasks_blocked()
        job = pool.submit_nowait(nap, 1)  # handed to an idle worker, not run
        assert books(pool).waking == 1
        job.cancel()
        assert job.state is trio_pool.JobState.CANCELLED
        assert_balanced(pool)
        await trio.testing.wait_all_tasks_blocked()  # it woke to nothing
        busy = [pool.submit_nowait(nap, 5) for _ in range(3)]  # 2 run, 1 queued
        with pytest.raises(trio_pool.PoolOverloaded):
            pool.submit_nowait(nap, 5)
        assert pool.statistics().queued + pool.statistics().running == 3
        assert_balanced(pool)
    assert all(j.state is trio_pool.JobState.SUCCEEDED for j in busy)
    assert_no_bookkeeping(pool)  # and the pool exited


# ----------------------------------------------------------------- 3-6. map


@pytest.mark.parametrize("ordered", [True, False])
async def test_map_misses_no_completion(small_interval: int, ordered: bool) -> None:
    with trio.fail_after(5):
        async with trio_pool.open_pool(3, capacity=0) as pool:
            async with pool.map(nap, [0] * 50, ordered=ordered) as results:
                got = [r async for r in results]
    assert got == [0] * 50
    assert_no_bookkeeping(pool)


async def test_unordered_map_raises_the_jobs_own_error(
    small_interval: int, autojump_clock: trio.abc.Clock
) -> None:
    async def fail_on(n: int) -> int:
        await trio.sleep(n % 3)
        if n == 4:
            raise ValueError("item 4")
        return n

    async with trio_pool.open_pool(3) as pool:
        with pytest.raises(ValueError, match="item 4"):
            async with pool.map(fail_on, range(20), ordered=False) as results:
                async for _ in results:
                    pass
    assert_no_bookkeeping(pool)


@pytest.mark.parametrize("how", ["close", "shutdown"])
async def test_map_submits_nothing_after_the_pool_closed(
    how: str, autojump_clock: trio.abc.Clock
) -> None:
    async with trio_pool.open_pool(2, capacity=1) as pool:
        # shutdown cancels the map's jobs: the first one delivered says so
        accepted: list[int] = []
        with pytest.raises((trio_pool.PoolClosed, trio_pool.JobCancelled)):
            async with pool.map(nap, [1] * 100) as results:
                async for _ in results:
                    if how == "close":
                        pool.close()
                    else:
                        await pool.shutdown(grace_period=0)
                    accepted.append(pool.statistics().submitted)
        assert pool.statistics().submitted == accepted[0]
        assert pool.statistics().workers == 0 or how == "close"
    assert_no_bookkeeping(pool)


async def test_map_streams_while_an_async_source_waits(
    autojump_clock: trio.abc.Clock,
) -> None:
    send, receive = trio.open_memory_channel[int](0)
    async with trio_pool.open_pool(2) as pool, trio.open_nursery() as nursery:

        async def produce() -> None:
            async with send:
                for n in range(3):
                    await send.send(n)
                    await trio.sleep(10)  # a slow, live source

        nursery.start_soon(produce)
        async with pool.map(nap, receive) as results:
            async for value in results:
                # each result arrives while the source waits for the next item
                assert trio.current_time() == pytest.approx(value + 10 * value)
                assert value == (trio.current_time() // 10)


@pytest.mark.parametrize("error", [StopAsyncIteration, StopIteration])
async def test_a_job_ending_iteration_does_not_end_the_map(
    error: type[BaseException], autojump_clock: trio.abc.Clock
) -> None:
    async def stop_on_two(n: int) -> int:
        if n == 2:
            raise error
        return n

    # Python itself turns a StopIteration leaving a coroutine into a
    # RuntimeError; trio_pool does the same for StopAsyncIteration.
    async with trio_pool.open_pool(2) as pool:
        with pytest.raises(RuntimeError, match=r"stop_on_two|StopIteration"):
            async with pool.map(stop_on_two, range(6)) as results:
                async for _ in results:
                    pass
        async with pool.map(stop_on_two, range(6), outcomes=True) as outcomes:
            every = [r async for r in outcomes]
        assert len(every) == 6
        assert isinstance(every[2], outcome.Error)


async def test_two_consumers_of_one_map_get_busy_resource_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1) as pool:
        async with pool.map(nap, [5, 5]) as results, trio.open_nursery() as nursery:
            nursery.start_soon(results.__anext__)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await results.__anext__()
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("steps", range(6))
async def test_leaving_a_map_whose_feeder_waits_for_room_cancels_only_its_jobs(
    small_interval: int, ordered: bool, steps: int, autojump_clock: trio.abc.Clock
) -> None:
    """A job the feeder has not got accepted is not the pool's to cancel."""
    async with trio_pool.open_pool(1, capacity=1) as pool:
        running = pool.submit_nowait(nap, 100)
        queued = pool.submit_nowait(nap, 100)  # the queue is full
        async with pool.map(nap, [1, 2, 3], ordered=ordered):
            for _ in range(steps):
                await step()
                check_invariants(pool)
        check_invariants(pool)
        assert not queued.done  # someone else's job: untouched
        assert_balanced(pool)
        running.cancel()
    assert queued.state is trio_pool.JobState.SUCCEEDED
    assert pool.statistics().cancelled == 1
    assert_balanced(pool)


# ------------------------------------------------------------ 7. resize down


async def test_resize_down_limits_every_start_after_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(8, capacity=100) as pool:
        for _ in range(40):
            pool.submit_nowait(nap, 1)
        await trio.sleep(0.5)
        assert pool.statistics().running == 8
        pool.resize(2)
        await trio.sleep(1)  # the first eight ended; only two started
        stats = pool.statistics()
        assert (stats.running, stats.workers) == (2, 2)
        assert_balanced(pool)


@pytest.mark.parametrize("capacity", [0, 4])
@pytest.mark.parametrize("steps", range(8))
async def test_resize_down_at_every_step_no_start_above_the_new_maximum(
    small_interval: int, capacity: int, steps: int, autojump_clock: trio.abc.Clock
) -> None:
    """Jobs handed to woken workers before a resize start only within it."""
    resized = False
    starts: list[tuple[bool, int, int]] = []

    async def job(pool: trio_pool.Pool) -> None:
        stats = pool.statistics()
        starts.append((resized, stats.running, stats.max_workers))
        await trio.sleep(1)

    async with trio_pool.open_pool(4, capacity=capacity) as pool:
        await trio.testing.wait_all_tasks_blocked()  # all four idle
        for _ in range(4 + capacity):
            pool.submit_nowait(job, pool)
        for _ in range(steps):
            await step()
            check_invariants(pool)
        pool.resize(1)
        resized = True
        check_invariants(pool)
        for _ in range(20):
            await step()
            check_invariants(pool)
    after = [(running, limit) for late, running, limit in starts if late]
    assert all(running <= limit for running, limit in after), starts
    assert len(starts) == 4 + capacity
    assert_balanced(pool)


# ------------------------------------------------- 8. telemetry that raises


class RaisingSpanProcessor(SpanProcessor):
    """Raises in on_start or on_end."""

    def __init__(self, where: str) -> None:
        self.where = where

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        if self.where == "start":
            raise RuntimeError("on_start broke")

    def on_end(self, span: ReadableSpan) -> None:
        if self.where == "end":
            raise RuntimeError("on_end broke")


class RaisingMeterProvider(MeterProvider):
    """An SDK meter provider whose synchronous instruments raise."""

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        meter = super().get_meter(*args, **kwargs)

        class Broken:
            def add(self, *args: Any, **kwargs: Any) -> None:
                raise RuntimeError("add broke")

            record = add

        def broken(*args: Any, **kwargs: Any) -> Broken:
            return Broken()

        meter.create_counter = broken  # type: ignore[method-assign,assignment]
        meter.create_histogram = broken  # type: ignore[method-assign,assignment]
        return meter


@pytest.mark.parametrize("where", ["start", "end", "meter"])
async def test_telemetry_that_raises_changes_nothing(
    where: str,
    autojump_clock: trio.abc.Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracer_provider = TracerProvider()
    meter_provider: MeterProvider
    if where == "meter":
        meter_provider = RaisingMeterProvider()
    else:
        tracer_provider.add_span_processor(RaisingSpanProcessor(where))
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    async def fail() -> None:
        raise ValueError("job failed")

    caplog.set_level(logging.WARNING, "trio_pool")
    async with trio_pool.open_pool(
        2,
        capacity=1,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    ) as pool:
        ok = [await pool.submit(nap, 1) for _ in range(3)]
        bad = await pool.submit(fail)
        with pytest.raises(trio_pool.PoolOverloaded):
            for _ in range(5):
                pool.submit_nowait(nap, 1)
        assert await ok[0].result() == 1
        await pool.shutdown(grace_period=10)
        with pytest.raises(trio_pool.PoolClosed):
            pool.submit_nowait(nap, 1)
    assert [j.state for j in ok] == [trio_pool.JobState.SUCCEEDED] * 3
    assert bad.state is trio_pool.JobState.FAILED
    stats = pool.statistics()
    assert (stats.succeeded, stats.failed, stats.cancelled) == (
        stats.submitted - 1,
        1,
        0,
    )
    assert_no_bookkeeping(pool)
    provider_warnings = [
        r for r in caplog.records if "OpenTelemetry provider raised" in r.message
    ]
    assert len(provider_warnings) == 1  # once per pool, with its traceback
    assert provider_warnings[0].exc_info is not None


# ------------------------------------ 9. calls from another thread or run


def _calls(pool: trio_pool.Pool, job: trio_pool.Job[Any]) -> dict[str, Any]:
    """Every entry point, as a sync call that a thread might make."""
    return {
        "submit_nowait": lambda: pool.submit_nowait(noop),
        "resize": lambda: pool.resize(3),
        "close": pool.close,
        "cancel": job.cancel,
        "map": lambda: pool.map(nap, [1]),
    }


def _async_calls(pool: trio_pool.Pool, job: trio_pool.Job[Any]) -> dict[str, Any]:
    return {
        "submit": lambda: pool.submit(noop),
        "run": lambda: pool.run(noop),
        "shutdown": lambda: pool.shutdown(),
        "result": job.result,
        "wait": job.wait,
    }


async def test_calls_from_another_thread_change_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    release = trio.Event()
    async with trio_pool.open_pool(2, capacity=1) as pool:
        running = pool.submit_nowait(release.wait)
        queued = [pool.submit_nowait(release.wait) for _ in range(2)]
        await trio.testing.wait_all_tasks_blocked()
        before = pool.statistics()
        for what, call in _calls(pool, queued[-1]).items():
            with pytest.raises(RuntimeError, match=r"from_thread\.run_sync") as info:
                await trio.to_thread.run_sync(call)
            assert what in str(info.value)
            assert pool.statistics() == before
            assert_balanced(pool)

        def in_another_run(make: Any) -> None:
            async def main() -> None:
                await make()

            trio.run(main)

        for what, make in _async_calls(pool, queued[-1]).items():
            with pytest.raises(RuntimeError, match="another Trio run") as info:
                await trio.to_thread.run_sync(in_another_run, make)
            assert what in str(info.value)
            assert pool.statistics() == before
            assert_balanced(pool)
        running.cancel()  # room for one more, submitted the right way:

        def submit_from_thread() -> trio_pool.Job[None]:
            return trio.from_thread.run_sync(pool.submit_nowait, noop)

        job = await trio.to_thread.run_sync(submit_from_thread)
        assert isinstance(job, trio_pool.Job)
        release.set()
    assert_no_bookkeeping(pool)


# ------------------------------------------------ 10. numbers no float holds


async def test_numbers_no_float_holds_get_value_error() -> None:
    async with trio_pool.open_pool(1) as pool:
        with pytest.raises(ValueError, match="timeout must fit in a float"):
            pool.submit_nowait(noop, timeout=10**400)
        with pytest.raises(ValueError, match=r"workers must be <= 1000000, not an int"):
            pool.resize(10**100)
        assert_balanced(pool)
        assert pool.statistics().submitted == 0
    with pytest.raises(ValueError, match="job_timeout must fit in a float"):
        trio_pool.open_pool(1, job_timeout=10**400)
    with pytest.raises(ValueError, match="workers must be <= 1000000, not 1000001"):
        trio_pool.open_pool(1_000_001)
    with pytest.raises(ValueError, match="max_workers must be <= 1000000"):
        trio_pool.open_pool(1, max_workers=10**9)
    with pytest.raises(ValueError, match=f"capacity must be <= {sys.maxsize}"):
        trio_pool.open_pool(1, capacity=sys.maxsize + 1)
    with pytest.raises(ValueError, match="grace_period must fit in a float"):
        async with trio_pool.open_pool(1) as pool:
            await pool.shutdown(grace_period=10**400)


async def test_infinite_limits_are_fine(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(1, job_timeout=float("inf")) as pool:
        assert await pool.run(nap, 5) == 5
        assert await pool.run(nap, 5, timeout=1e308) == 5


# ------------------------------------------------------------- 11. smaller


async def test_the_map_hint_for_a_sync_function_works() -> None:
    def double(n: int) -> int:
        return 2 * n

    async with trio_pool.open_pool(2) as pool:
        sync: Any = double
        with pytest.raises(TypeError) as info:
            async with pool.map(sync, [1]) as results:
                async for _ in results:
                    pass  # pragma: no cover
        hint = "pool.map(functools.partial(trio.to_thread.run_sync, fn), items)"
        assert hint in str(info.value)
        wrapped: Any = functools.partial(trio.to_thread.run_sync, double)  # type: ignore[arg-type]
        async with pool.map(wrapped, [1, 2]) as results:
            assert [r async for r in results] == [2, 4]


async def test_each_reader_sees_the_error_as_the_job_left_it() -> None:
    async def fail() -> None:
        raise ValueError("the job's own")

    async with trio_pool.open_pool(1) as pool:
        job = await pool.submit(fail)
        await job.wait()
        try:
            raise KeyError("reader one's own trouble")
        except KeyError:
            with pytest.raises(ValueError, match="the job's own") as first:
                await job.result()
        assert isinstance(first.value.__context__, KeyError)
        with pytest.raises(ValueError, match="the job's own") as second:
            await job.result()
        assert second.value.__context__ is None
        result = await job.wait()
        assert isinstance(result, outcome.Error)
        assert result.error.__context__ is None


def test_pool_sizes_are_documented_bounds() -> None:
    assert _checks.MAX_WORKERS == 1_000_000
    assert sys.maxsize == _checks.MAX_CAPACITY


async def test_async_source_iterator_of_our_own(autojump_clock: trio.abc.Clock) -> None:
    async def numbers() -> AsyncIterator[int]:
        for n in range(5):
            await trio.sleep(1)
            yield n

    def plain() -> Iterator[int]:
        yield from range(5)

    async with trio_pool.open_pool(2) as pool:
        async with pool.map(nap, numbers()) as results:
            assert [r async for r in results] == list(range(5))
        async with pool.map(nap, plain(), ordered=False) as results:
            assert sorted([r async for r in results]) == list(range(5))


# ------------------------------------------ 12. the adversarial review, again


@pytest.mark.parametrize("capacity", [0, 1])
@pytest.mark.parametrize("steps", range(6))
async def test_room_counts_only_starting_workers_that_will_take_a_job(
    small_interval: int, capacity: int, steps: int, autojump_clock: trio.abc.Clock
) -> None:
    """After a resize down, a surplus worker being started makes no room."""
    async with trio_pool.open_pool(1, max_workers=3, capacity=capacity) as pool:
        blocker = pool.submit_nowait(nap, 100)
        await trio.testing.wait_all_tasks_blocked()
        for extra in [pool.submit_nowait(nap, 100) for _ in range(2)]:
            extra.cancel()  # the workers started for them are still starting
        for _ in range(steps):
            await step()
            check_invariants(pool)
        pool.resize(1, max_workers=1)
        check_invariants(pool)
        accepted: list[trio_pool.Job[float]] = []
        for _ in range(3):
            with contextlib.suppress(trio_pool.PoolOverloaded):
                accepted.append(pool.submit_nowait(nap, 1))
            check_invariants(pool)
        assert len(accepted) <= capacity
        for _ in range(12):
            await step()
            check_invariants(pool)
        blocker.cancel()
    assert all(job.state is trio_pool.JobState.SUCCEEDED for job in accepted)
    assert_no_bookkeeping(pool)


@pytest.mark.parametrize(("workers", "max_workers"), [(4, 8), (4, 4)])
async def test_lowering_the_minimum_lets_idle_workers_retire(
    workers: int, max_workers: int, autojump_clock: trio.abc.Clock
) -> None:
    async with trio_pool.open_pool(
        workers, max_workers=max_workers, idle_timeout=10
    ) as pool:
        await trio.sleep(100)  # every worker idle, parked with no timer
        pool.resize(1, max_workers=max_workers)
        await trio.sleep(10.5)
        assert pool.statistics().workers == 1
        assert_balanced(pool)


async def test_a_job_arriving_as_an_idle_timer_expires_is_not_left_waiting(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Run many times: Trio's scheduler picks the order of the two at random."""
    for _ in range(20):
        async with trio_pool.open_pool(1, max_workers=2, idle_timeout=10) as pool:
            start = trio.current_time()
            busy = pool.submit_nowait(nap, 100)
            pool.submit_nowait(nap, 1)  # starts a second worker, idle from +1 s
            await trio.sleep_until(start + 11)  # its idle timer expires now
            quick = pool.submit_nowait(nap, 0)
            await quick.wait()
            assert trio.current_time() == start + 11
            busy.cancel()


async def test_shutdown_inside_one_of_its_own_jobs_is_refused(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def stop(pool: trio_pool.Pool) -> None:
        await pool.shutdown()

    with trio.fail_after(60):  # a regression would wait forever
        await _shutdown_inside_a_job(stop)


async def _shutdown_inside_a_job(stop: Any) -> None:
    async with trio_pool.open_pool(2) as pool:
        other = pool.submit_nowait(nap, 5)
        job = pool.submit_nowait(stop, pool)
        outcome_ = await job.wait()
        assert isinstance(outcome_, outcome.Error)
        assert isinstance(outcome_.error, RuntimeError)
        assert "pool.close()" in str(outcome_.error)
        assert not pool.statistics().closed  # refused before anything changed
    assert other.state is trio_pool.JobState.SUCCEEDED


async def test_reading_a_done_job_from_another_run_is_refused(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def boom() -> None:
        raise ValueError("boom")

    async with trio_pool.open_pool(2) as pool:
        done: list[trio_pool.Job[Any]] = [
            pool.submit_nowait(nap, 1),
            pool.submit_nowait(boom),
        ]
        await trio.sleep(2)
        snapshot = books(pool)
        before = (snapshot.since_yield, snapshot.unretrieved)

        def in_another_run(job: trio_pool.Job[Any], method: str) -> None:
            async def main() -> None:
                await getattr(job, method)()

            trio.run(main)

        for job in done:
            assert job.done
            for method in ("wait", "result"):
                with pytest.raises(RuntimeError, match="another Trio run"):
                    await trio.to_thread.run_sync(in_another_run, job, method)
        snapshot = books(pool)
        assert (snapshot.since_yield, snapshot.unretrieved) == before
        await done[1].wait()


class RaisingHandler(logging.Handler):
    """A handler that raises, as handlers that do not catch their own errors do."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen = 0

    def handle(self, record: logging.LogRecord) -> bool:
        self.seen += 1
        raise RuntimeError("the log handler broke")


async def test_a_raising_log_handler_changes_no_outcome_and_no_count(
    small_interval: int,
    autojump_clock: trio.abc.Clock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every message the pool logs (each level) goes to a handler that raises."""
    from trio_pool import _log

    monkeypatch.setattr(_log, "_reported", False)
    handler = RaisingHandler()
    logger = logging.getLogger("trio_pool")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)

    async def boom() -> None:
        await trio.sleep(1)
        raise ValueError("boom")

    try:
        async with trio_pool.open_pool(2, max_workers=4, idle_timeout=1) as pool:
            jobs = [pool.submit_nowait(nap, 2) for _ in range(6)]
            failed = pool.submit_nowait(boom)
            dropped = pool.submit_nowait(boom)  # nobody reads it: a WARNING
            del dropped
            pool.resize(1, max_workers=3)
            await trio.sleep(10)  # scaling decisions, retirements
            assert_balanced(pool)
            stuck = pool.submit_nowait(nap, 100)
            await pool.shutdown(grace_period=1)  # the grace period runs out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert handler.seen >= 6
    assert [job.state for job in jobs] == [trio_pool.JobState.SUCCEEDED] * 6
    assert failed.state is trio_pool.JobState.FAILED
    assert stuck.state is trio_pool.JobState.CANCELLED
    stats = pool.statistics()
    assert (stats.submitted, stats.succeeded, stats.failed, stats.cancelled) == (
        9,
        6,
        2,
        1,
    )
    assert_no_bookkeeping(pool)
    err = capsys.readouterr().err
    assert err.count("a handler of the 'trio_pool' logger raised") == 1


@pytest.mark.parametrize("steps", range(6))
async def test_a_job_failing_as_the_pool_is_cancelled_from_outside_stays_isolated(
    small_interval: int, steps: int, autojump_clock: trio.abc.Clock
) -> None:
    """The job's own errors are its failure; only the cancellation goes on."""

    async def child() -> None:
        try:
            await trio.sleep_forever()
        finally:
            raise ValueError("cleanup failed in a child of the job")

    async def job() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
            await trio.sleep_forever()

    handles: list[trio_pool.Job[Any]] = []
    with trio.move_on_after(5) as scope:
        async with trio_pool.open_pool(2) as pool:
            handles += [pool.submit_nowait(job), pool.submit_nowait(nap, 100)]
            for _ in range(steps):
                await step()
    assert_no_bookkeeping(pool)  # pyright: ignore[reportPossiblyUnboundVariable]
    assert scope.cancelled_caught  # the outside cancellation was not replaced
    failed, cancelled = handles
    assert failed.state is trio_pool.JobState.FAILED
    error = failed._error
    assert isinstance(error, BaseExceptionGroup)
    own: Any = error.split(ValueError)[0]  # pyright: ignore[reportUnknownMemberType]
    assert own is not None
    assert cancelled.state is trio_pool.JobState.CANCELLED


# ------------------------------- issue 17: a KeyboardInterrupt at each instant
#
# The interrupt is a real SIGINT, raised at the chosen instant by a patched
# step: Trio's handler raises KeyboardInterrupt there unless the frame (or a
# caller's) is KI-protected, in which case Trio delivers it to the main task
# at its next checkpoint. Either way the pool must resolve every job.


def interrupt_at(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str, *, after: bool
) -> list[bool]:
    """Patch ``owner.name`` to raise SIGINT once, right before or after the
    real call."""
    real = getattr(owner, name)
    fired: list[bool] = []

    def interrupt() -> None:
        if not fired:
            fired.append(True)
            signal.raise_signal(signal.SIGINT)

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        if not after:
            interrupt()
        result = real(*args, **kwargs)
        if after:
            interrupt()
        return result

    monkeypatch.setattr(owner, name, interrupted)
    return fired


def run_interrupted(main: Callable[[], Awaitable[None]]) -> None:
    """Run ``main`` under a MockClock; it must end with the KeyboardInterrupt."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    # Trio turns SIGINT into KeyboardInterrupt only over Python's own
    # handler, which a process started with SIGINT ignored (in the
    # background, by a shell without job control) does not have.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            trio.run(main, clock=clock)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_as_an_idle_worker_starts_a_handed_over_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 17, finding 5: the job never stayed RUNNING after the pool exited."""
    pools: list[trio_pool.Pool] = []
    jobs: list[trio_pool.Job[Any]] = []

    async def main() -> None:
        async with trio_pool.open_pool(1) as pool:
            pools.append(pool)
            fired = interrupt_at(monkeypatch, _core.PoolCore, "take_handed", after=True)
            jobs.append(await pool.submit(trio.sleep, 10))  # to the idle worker
            await jobs[0].wait()
            assert fired

    run_interrupted(main)
    stats = pools[0].statistics()
    assert (stats.running, stats.queued) == (0, 0), stats
    assert jobs[0].done, jobs[0]
    assert_no_bookkeeping(pools[0])


def test_ctrl_c_inside_a_blocked_submit_leaves_no_stale_waiter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 17, finding 6: close() woke a task that was not parked."""
    pools: list[trio_pool.Pool] = []

    async def main() -> None:
        async with trio_pool.open_pool(1, capacity=0) as pool:
            pools.append(pool)
            await pool.submit(trio.sleep, 10)  # the only worker is busy
            # registered as a waiter, not parked yet:
            interrupt_at(monkeypatch, _waiters, "wait_task_rescheduled", after=False)
            await pool.submit(trio.sleep, 10)

    run_interrupted(main)
    stats = pools[0].statistics()
    assert (stats.waiting_submitters, stats.running, stats.queued) == (0, 0, 0)
    assert_no_bookkeeping(pools[0])


async def test_dir_of_a_job_lists_only_the_documented_api() -> None:
    """Issue 16, item 7: the core's bookkeeping is not offered as API."""
    async with trio_pool.open_pool(1, timings=True) as pool:
        job = await pool.submit(noop)
        await job.wait()
    documented = {
        *("result", "wait", "cancel", "state", "done", "name"),
        *("submitted_at", "started_at", "finished_at"),
        *("wait_duration", "run_duration"),
    }
    assert [n for n in dir(job) if not n.startswith("_")] == sorted(documented)


def test_ctrl_c_as_the_pool_closes_comes_out_as_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by review: a Ctrl-C as the body ended, before the workers'
    nursery closed, left it open ('Nursery stack corrupted')."""
    pools: list[trio_pool.Pool] = []

    async def main() -> None:
        async with trio_pool.open_pool(2) as pool:
            pools.append(pool)
            await pool.submit(trio.sleep, 1)
            manager = contextlib._AsyncGeneratorContextManager  # open_pool's own
            interrupt_at(monkeypatch, manager, "__aexit__", after=False)

    run_interrupted(main)
    assert_no_bookkeeping(pools[0])


def test_ctrl_c_as_a_map_opens_comes_out_as_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by review: the same with the map's feeder nursery."""
    pools: list[trio_pool.Pool] = []

    async def main() -> None:
        async with trio_pool.open_pool(2) as pool:
            pools.append(pool)
            interrupt_at(monkeypatch, trio.Nursery, "start_soon", after=True)
            async with pool.map(trio.sleep, [1, 2]) as results:
                async for _ in results:
                    pass  # pragma: no cover

    run_interrupted(main)
    assert_no_bookkeeping(pools[0])


def test_a_variant_that_makes_its_own_jobs_makes_its_batches_too() -> None:
    """A map's batches are made by `make_jobs`: a core variant that overrides
    `make_job` (to set its feature's fields) and not `make_jobs` would make
    batches without them, so its class is refused."""
    with pytest.raises(TypeError, match="overrides make_job, not make_jobs"):

        class Forgetful(_core.PoolCore):  # pyright: ignore[reportUnusedClass]
            def make_job(self, *args: Any, **kwargs: Any) -> Any:
                return super().make_job(*args, **kwargs)
