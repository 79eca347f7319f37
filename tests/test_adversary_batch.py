"""Issue 17, adversary: attacks on a plain map's batches and the telemetry's
common step (speed5, tele3), through the public API.

A plain map pulls a list, tuple or range in batches and offers each in one
call; a generator may do anything while it is pulled: raise, submit to the
pool (with a priority: the pool changes class), resize it, close it (two of
these broke the batches: generators are pulled one by one again). A job
beyond a full queue must not start before the queued ones. The timed
and traced cores stamp and measure each job once, whatever the features
they are combined with, and each job's span carries its own outcome.
"""

# The Ctrl-C test traces a private method of the map, by its code.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import inspect
from collections.abc import Iterator
from types import CodeType
from typing import Any

import pytest
import trio
import trio.testing
from opentelemetry.trace import StatusCode

import trio_pool
from trio_pool import _core, _feeder
from trio_pool._feeder import Feeder
from trio_pool._telemetry import JOB_OUTCOME

from .helpers import assert_balanced, assert_no_bookkeeping, books
from .test_telemetry import Telemetry
from .test_worker_interrupts import Interrupter, interrupt_each_hit


async def echo(item: int) -> int:
    await trio.sleep(1)
    return item


async def nap(seconds: float) -> float:
    await trio.sleep(seconds)
    return seconds


async def fail() -> None:
    await trio.sleep(1)
    raise ValueError("failed on purpose")


async def collect(pool: trio_pool.Pool, source: Any) -> list[int]:
    got: list[int] = []
    async with pool.map(echo, source) as results:
        async for value in results:
            got.append(value)
    return got


# ------------------------------------------------------------ batch feeder


async def test_a_source_raising_mid_batch_delivers_every_item_before_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    def source() -> Iterator[int]:
        yield from range(5)
        raise KeyError("the source broke")

    async with trio_pool.open_pool(1, capacity=10) as pool:
        got: list[int] = []
        with pytest.raises(KeyError, match="the source broke"):
            async with pool.map(echo, source()) as results:
                async for value in results:
                    got.append(value)
        assert got == [0, 1, 2, 3, 4]
        assert_balanced(pool)


async def test_a_source_that_submits_with_a_priority_mid_batch(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The pool becomes its variant with priorities while a batch is pulled."""
    async with trio_pool.open_pool(1, capacity=20) as pool:
        extra: list[trio_pool.Job[int]] = []

        def source() -> Iterator[int]:
            for item in range(12):
                if item == 3:
                    extra.append(pool.submit_nowait(echo, 100, priority=5))
                yield item

        assert await collect(pool, source()) == list(range(12))
        assert await extra[0].result() == 100
        assert_balanced(pool)


async def test_a_source_that_resizes_the_pool_down_mid_batch(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(3, capacity=6) as pool:

        def source() -> Iterator[int]:
            for item in range(30):
                if item == 4:
                    pool.resize(1, max_workers=1)
                yield item

        assert await collect(pool, source()) == list(range(30))
        assert pool.statistics().succeeded == 30
        assert_balanced(pool)


async def test_a_source_that_closes_the_pool_runs_the_items_pulled_before(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Items pulled before the source closed the pool were offered before it
    closed, as one by one: they run and are delivered, then PoolClosed."""
    async with trio_pool.open_pool(1, capacity=10) as pool:
        await pool.submit(nap, 1)  # busy: the map's items are queued

        def source() -> Iterator[int]:
            for item in range(8):
                if item == 3:
                    pool.close()
                yield item

        got: list[int] = []
        with pytest.raises(trio_pool.PoolClosed):
            async with pool.map(echo, source()) as results:
                async for value in results:
                    got.append(value)
        assert got == [0, 1, 2]
        assert_balanced(pool)


async def test_a_source_that_submits_never_gets_ahead_of_its_pulled_items(
    autojump_clock: trio.abc.Clock,
) -> None:
    """First come, first served: an item pulled before the source's own
    submission starts before it."""
    started: list[object] = []

    async def note(item: object) -> object:
        started.append(item)
        await trio.sleep(1)
        return item

    async with trio_pool.open_pool(1, capacity=10) as pool:
        await pool.submit(nap, 1)  # busy: the map's items are queued

        def source() -> Iterator[int]:
            for item in range(4):
                if item == 2:
                    pool.submit_nowait(note, "submitted")
                yield item

        async with pool.map(note, source()) as results:
            assert [value async for value in results] == [0, 1, 2, 3]
        assert started == [0, 1, "submitted", 2, 3]


@pytest.mark.parametrize("mapped", [False, True])
async def test_bug_a_job_beyond_a_full_queue_never_starts_before_the_queued_ones(
    autojump_clock: trio.abc.Clock, mapped: bool
) -> None:
    """Two idle workers, room for 4: the first job wakes one worker, 4 are
    queued (a worker is waking), and the 6th, with the queue full, wakes the
    second worker. That worker must run the oldest queued job (1), not the
    6th, which jumped the queue (found through a map: item 5 ran at once,
    items 1 to 4 a second later; as old as a725267). A pool with a rate
    never hands a job over while jobs are queued (`PacedCore._decide`)."""
    started: dict[object, float] = {}

    async def note(item: object) -> object:
        started[item] = trio.current_time()
        await trio.sleep(1)
        return item

    async with trio_pool.open_pool(2, capacity=4) as pool:
        await trio.testing.wait_all_tasks_blocked()  # both workers idle
        if mapped:
            async with pool.map(note, iter(range(8))) as results:
                assert [value async for value in results] == list(range(8))
        else:
            for item in range(6):
                pool.submit_nowait(note, item)
            await pool.join()
        # (two jobs starting at one instant start in either order)
        times = [started[item] for item in range(6)]
        assert times == sorted(times), started
        assert_balanced(pool)


@pytest.mark.parametrize("capacity", [0, 1])
async def test_a_map_in_a_pool_with_little_or_no_room(
    autojump_clock: trio.abc.Clock, capacity: int
) -> None:
    async with trio_pool.open_pool(1, capacity=capacity) as pool:
        assert await collect(pool, iter(range(20))) == list(range(20))
        assert_balanced(pool)


async def test_an_outside_cancellation_while_a_batch_is_half_offered(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2, capacity=4) as pool:
        got: list[int] = []
        with trio.move_on_after(2.5):
            async with pool.map(echo, iter(range(100))) as results:
                async for value in results:
                    got.append(value)
        assert got == list(range(len(got)))
        assert len(got) >= 2
        stats = pool.statistics()
        assert (stats.queued, stats.running) == (0, 0)
        assert_balanced(pool)
        assert await collect(pool, iter(range(5))) == list(range(5))


async def test_a_job_timing_out_mid_map_then_the_rest_run(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=5) as pool:
        async with pool.map(nap, [1, 5, 1, 1], timeout=2, outcomes=True) as results:
            outcomes = [value async for value in results]
        assert [type(o).__name__ for o in outcomes] == [
            "Value",
            "Error",
            "Value",
            "Value",
        ]
        assert pool.statistics().timed_out == 1
        assert_balanced(pool)


# --------------------------------------------------------------- timings


FEATURES: list[dict[str, Any]] = [
    {},
    {"per_key_limit": 1},
    {"rate": 100.0, "burst": 10},
    {"priority": True},
    {"per_key_limit": 1, "rate": 100.0, "burst": 10, "priority": True},
]


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("features", FEATURES)
async def test_each_job_is_stamped_and_measured_once(
    autojump_clock: trio.abc.Clock, features: dict[str, Any], traced: bool
) -> None:
    """One worker runs jobs of 1, 3, 2 s back to back: the mean run is the
    moving average of each run folded once, each job's run_duration its own,
    and the duration histogram counts each job once."""
    options = dict(features)
    priority = options.pop("priority", False)
    otel = Telemetry()
    opened = (
        otel.pool(1, capacity=5, timings=True, **options)
        if traced
        else trio_pool.open_pool(1, capacity=5, timings=True, **options)
    )
    async with opened as pool:
        blocker = pool.submit_nowait(nap, 0.5)
        jobs = [
            pool.submit_nowait(
                nap,
                seconds,
                key="k" if "per_key_limit" in options else None,
                priority=1 if priority else 0,
            )
            for seconds in (1, 3, 2)
        ]
        await pool.join()
        assert [job.run_duration for job in jobs] == [1, 3, 2]
        expected: float = 0.5
        for run in (1, 3, 2):
            expected += (run - expected) / 8
        assert books(pool).mean_run == pytest.approx(expected)
        assert blocker.run_duration == 0.5
    if traced:
        counts = [count for _, count in otel.points("trio_pool.job.duration")]
        assert sum(counts) == 4
        assert len(otel.finished("run nap")) == 4


async def test_each_job_span_has_its_own_outcome_in_one_worker(
    autojump_clock: trio.abc.Clock,
) -> None:
    otel = Telemetry()
    async with otel.pool(1, capacity=10) as pool:
        jobs = [
            pool.submit_nowait(fail),
            pool.submit_nowait(nap, 1, name="named"),
            pool.submit_nowait(nap, 5, timeout=2),
            pool.submit_nowait(nap, 1),
            pool.submit_nowait(fail, name="named"),
            pool.submit_nowait(nap, 1, name="named"),
        ]
        await pool.join()
        for job in jobs:
            await job.wait()
    spans = sorted(
        otel.spans.get_finished_spans(), key=lambda span: span.start_time or 0
    )
    seen = [
        (
            span.name,
            span.attributes[JOB_OUTCOME] if span.attributes else None,
            span.status.status_code,
        )
        for span in spans
        if span.name.startswith("run ")
    ]
    assert seen == [
        ("run fail", "failed", StatusCode.ERROR),
        ("run named", "succeeded", StatusCode.UNSET),
        ("run nap", "timed_out", StatusCode.ERROR),
        ("run nap", "succeeded", StatusCode.UNSET),
        ("run named", "failed", StatusCode.ERROR),
        ("run named", "succeeded", StatusCode.UNSET),
    ]


# ---------------------------------------------------------- thread check


def test_a_pool_called_from_another_thread_or_run_refuses() -> None:
    kept: list[trio_pool.Pool] = []
    errors: list[BaseException] = []

    def from_thread(pool: trio_pool.Pool) -> None:
        try:
            pool.submit_nowait(echo, 1)
        except RuntimeError as exc:
            errors.append(exc)

    async def first_run() -> None:
        async with trio_pool.open_pool(1) as pool:
            kept.append(pool)
            await trio.to_thread.run_sync(from_thread, pool)
            assert await (await pool.submit(echo, 7)).result() == 7

    async def second_run() -> None:
        (pool,) = kept
        with pytest.raises(RuntimeError, match="another Trio run"):
            pool.submit_nowait(echo, 1)
        with pytest.raises(RuntimeError, match="another Trio run"):
            async with pool.map(echo, [1]):
                pass

    trio.run(first_run)
    assert len(errors) == 1
    assert "outside any Trio run" in str(errors[0])
    trio.run(second_run)
    from_thread(kept[0])  # after it exited, from a thread of no run
    assert len(errors) == 2


async def test_a_source_that_turns_shedding_on_mid_batch(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The pool becomes its timed variant while a batch is pulled: the map's
    jobs made before run untimed, those after are timed, each measured once."""
    async with trio_pool.open_pool(1, capacity=20) as pool:
        shed_jobs: list[trio_pool.Job[int]] = []

        def source() -> Iterator[int]:
            for item in range(12):
                if item == 3:
                    shed_jobs.append(pool.submit_nowait(echo, 100, shed=True))
                yield item

        with trio.fail_after(1000):  # a deadline: shedding measures runs
            async with pool.map(echo, source()) as results:
                assert [value async for value in results] == list(range(12))
        assert pool.statistics().succeeded == 13
        assert await shed_jobs[0].result() == 100
        assert books(pool).mean_run == 1  # every run measured took 1 s
        assert_balanced(pool)


async def test_a_failing_job_mid_batch_ends_the_map_and_cancels_the_rest(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def maybe_fail(item: int) -> int:
        await trio.sleep(1)
        if item == 5:
            raise ValueError(item)
        return item

    async with trio_pool.open_pool(2, capacity=8) as pool:
        got: list[int] = []
        with pytest.raises(ValueError, match="5"):
            async with pool.map(maybe_fail, iter(range(40))) as results:
                async for value in results:
                    got.append(value)
        assert got == [0, 1, 2, 3, 4]
        stats = pool.statistics()
        assert (stats.queued, stats.running, stats.failed) == (0, 0, 1)
        assert stats.cancelled > 0
        assert_balanced(pool)


class RaisingTracer:
    """A tracer whose every span start raises (a broken provider)."""

    def start_span(self, *args: object, **kwargs: object) -> Any:
        raise RuntimeError("broken tracer")


async def test_a_raising_tracer_costs_no_job_and_no_measure(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    otel = Telemetry()
    async with otel.pool(1, capacity=5, timings=True) as pool:
        pool._core._telemetry._tracer = RaisingTracer()
        jobs = [pool.submit_nowait(nap, seconds) for seconds in (1, 2, 3)]
        await pool.join()
        assert [await job.result() for job in jobs] == [1, 2, 3]
        assert [job.run_duration for job in jobs] == [1, 2, 3]
    counts = [count for _, count in otel.points("trio_pool.job.duration")]
    assert sum(counts) == 3
    assert caplog.text.count("an OpenTelemetry provider raised") == 1


# ------------------------------------------------- Ctrl-C in the batch feeder


FEEDER_CODE: CodeType = Feeder._feed_batches.__code__  # pyright: ignore[reportUnknownMemberType]
FEEDER_SOURCE = inspect.getsource(_feeder).splitlines()
UNREACHED = {
    "self._room = await self._wait_for_room()",  # (the consumer keeps up)
}
FEEDER_LINES = sorted(
    {
        line
        for _, _, line in FEEDER_CODE.co_lines()
        if line is not None
        and line != FEEDER_CODE.co_firstlineno
        and FEEDER_SOURCE[line - 1].strip() not in UNREACHED
    }
)


@pytest.mark.parametrize(
    "line",
    FEEDER_LINES,
    ids=[f"{line}:{FEEDER_SOURCE[line - 1].strip()[:40]}" for line in FEEDER_LINES],
)
def test_ctrl_c_at_each_line_of_the_batch_feeder(
    monkeypatch: pytest.MonkeyPatch, line: int
) -> None:
    """Whichever line of `_feed_batches` a Ctrl-C lands on, the run ends
    with it (or ends normally), and the pool's books close."""
    monkeypatch.setattr(_core, "YIELD_EVERY", 4)

    def attempt(interrupter: Interrupter) -> None:
        pools: list[trio_pool.Pool] = []
        got: list[int] = []

        async def scenario() -> None:
            async with trio_pool.open_pool(2, capacity=3) as pool:
                pools.append(pool)
                async with pool.map(echo, list(range(40))) as results:
                    async for value in results:
                        got.append(value)

        try:
            with interrupter.armed():
                clock = trio.testing.MockClock(autojump_threshold=0)
                trio.run(scenario, clock=clock)
        except KeyboardInterrupt:
            assert interrupter.fired
        else:
            assert got == list(range(40))
        assert got == list(range(len(got)))
        for pool in pools:
            assert_no_bookkeeping(pool)

    interrupt_each_hit(FEEDER_CODE, line, 4, attempt)
