"""Rate limits: job starts paced by a token bucket, exact under MockClock."""

# pyright: reportPossiblyUnboundVariable=false
# Two tests read the core's decision (`Pool._core`: the inlined case's check).
# pyright: reportPrivateUsage=false

from __future__ import annotations

import collections
import contextlib
import math
import random
from typing import Any

import pytest
import trio
import trio.testing

import trio_pool
from trio_pool._admission import GROW, HAND, QUEUE, REFUSE, WAKE
from trio_pool._checks import MAX_BURST, MIN_RATE
from trio_pool._crew import Worker
from trio_pool._variants import PacedCore

from .helpers import assert_balanced, assert_no_bookkeeping, books, sleep_and_return


async def test_starts_follow_the_rate_after_a_burst(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(10, rate=4, burst=3, timings=True) as pool:
        jobs = [pool.submit_nowait(sleep_and_return, 0) for _ in range(9)]
        await pool.join()
        starts = [job.started_at for job in jobs]
        assert starts == [0, 0, 0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
        assert_balanced(pool)


async def test_the_bucket_refills_while_quiet(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(4, rate=2, burst=4, timings=True) as pool:
        assert pool.statistics().rate_tokens == 4
        for _ in range(4):
            pool.submit_nowait(sleep_and_return, 0)
        await trio.testing.wait_all_tasks_blocked()
        assert pool.statistics().rate_tokens == 0
        await trio.sleep(0.25)
        assert pool.statistics().rate_tokens == 0.5
        await trio.sleep(10)
        assert pool.statistics().rate_tokens == 4  # never more than the burst
        jobs = [pool.submit_nowait(sleep_and_return, 0) for _ in range(5)]
        await pool.join()
        assert [job.started_at for job in jobs] == [10.25] * 4 + [10.75]


async def test_busy_workers_take_tokens_as_they_finish(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Two workers, 1 s jobs, 10 starts/s: the workers are the limit, not the
    # rate; then 0.1 s jobs: the rate is.
    async with trio_pool.open_pool(2, rate=10, timings=True) as pool:
        slow = [pool.submit_nowait(sleep_and_return, 1) for _ in range(4)]
        await pool.join()
        assert [job.started_at for job in slow] == [0, 0.1, 1, 1.1]
        fast = [pool.submit_nowait(sleep_and_return, 0.01) for _ in range(5)]
        await pool.join()
        gaps = [b - a for a, b in zip(starts(fast), starts(fast)[1:], strict=False)]
        assert gaps == pytest.approx([0.1] * 4)


def starts(jobs: list[trio_pool.Job[object]]) -> list[float]:
    return [job.started_at for job in jobs if job.started_at is not None]


async def test_the_rate_is_never_exceeded_in_any_window(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Jobs of mixed lengths from several submitters: in every window of one
    # second, at most burst + rate starts (the token bucket's bound).
    async with trio_pool.open_pool(
        8, max_workers=16, rate=5, burst=2, timings=True
    ) as pool:
        jobs: list[trio_pool.Job[object]] = []

        async def submitter(lengths: list[float]) -> None:
            for length in lengths:
                jobs.append(await pool.submit(sleep_and_return, length))
                await trio.sleep(length / 3)

        async with trio.open_nursery() as nursery:
            for k in range(4):
                lengths = [0.1 * ((k * 7 + n) % 11) for n in range(15)]
                nursery.start_soon(submitter, lengths)
        await pool.join()
        times = sorted(starts(jobs))
        assert len(times) == 60
        for first, start in enumerate(times):
            in_window = sum(1 for t in times[first:] if t < start + 1 - 1e-9)
            assert in_window <= 2 + 5, (start, in_window)
        assert_balanced(pool)


async def test_capacity_and_backpressure_still_apply(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2, capacity=2, rate=1) as pool:
        first = pool.submit_nowait(trio.sleep, 0)  # starts now
        waiting = [pool.submit_nowait(trio.sleep, 0) for _ in range(2)]
        with pytest.raises(trio_pool.PoolOverloaded):
            pool.submit_nowait(trio.sleep, 0)
        await trio.testing.wait_all_tasks_blocked()
        assert pool.statistics().queued == 2  # a worker is idle: the rate holds them
        late = await pool.submit(trio.sleep, 0)  # waits for room: 1 s
        assert trio.current_time() == 1
        await pool.join()
        assert trio.current_time() == 3
        assert all(job.done for job in [first, *waiting, late])
        assert_balanced(pool)


async def test_capacity_zero_hands_jobs_over_at_the_rate(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(3, capacity=0, rate=2, timings=True) as pool:
        jobs = [await pool.submit(sleep_and_return, 0) for _ in range(3)]
        assert trio.current_time() == 1  # each waited for its token
        await pool.join()
        assert starts(jobs) == [0, 0.5, 1.0]


async def test_the_pool_drains_at_the_rate_when_the_body_ends(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(4, rate=1) as pool:
        jobs = [pool.submit_nowait(trio.sleep, 0) for _ in range(5)]
    assert trio.current_time() == 4
    assert all(job.state is trio_pool.JobState.SUCCEEDED for job in jobs)
    assert_no_bookkeeping(pool)


async def test_shutdown_cancels_jobs_still_waiting_for_the_rate(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(4, rate=1 / 3600) as pool:
        jobs = [pool.submit_nowait(trio.sleep, 0) for _ in range(3)]
        await pool.shutdown(grace_period=5)
        assert trio.current_time() == 5
    assert [job.state.value for job in jobs] == ["succeeded", "cancelled", "cancelled"]
    assert_no_bookkeeping(pool)


async def test_an_error_in_the_body_leaves_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    with pytest.raises(KeyError):
        async with trio_pool.open_pool(1, rate=1 / 3600) as pool:
            pool.submit_nowait(trio.sleep, 0)
            waiting = pool.submit_nowait(trio.sleep, 0)
            await trio.sleep(1)
            raise KeyError("out")
    assert trio.current_time() == 1
    assert waiting.state is trio_pool.JobState.CANCELLED
    assert_no_bookkeeping(pool)


async def test_a_cancelled_hand_over_gives_its_token_back(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2, rate=1, burst=2, timings=True) as pool:
        handed = pool.submit_nowait(trio.sleep, 0)
        handed.cancel()  # before the worker ran: the start never happened
        assert pool.statistics().rate_tokens == 2
        jobs = [pool.submit_nowait(sleep_and_return, 0) for _ in range(2)]
        await pool.join()
        assert starts(jobs) == [0, 0]


async def test_a_resize_that_sends_a_handed_job_back_gives_its_token_back(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2, rate=1, burst=2, timings=True) as pool:
        busy = pool.submit_nowait(trio.sleep, 10)
        await trio.testing.wait_all_tasks_blocked()
        handed = pool.submit_nowait(sleep_and_return, 0)
        pool.resize(1)  # the woken worker is now surplus: the job goes back
        await trio.testing.wait_all_tasks_blocked()
        assert (handed.started_at, pool.statistics().rate_tokens) == (None, 1)
        await pool.join()
        assert handed.started_at == 10  # when the other worker was free
        assert busy.done
        assert_balanced(pool)


async def test_a_scaling_pool_grows_for_jobs_that_wait_for_workers(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, max_workers=4, rate=10, burst=4) as pool:
        for _ in range(4):
            pool.submit_nowait(trio.sleep, 5)
        await trio.testing.wait_all_tasks_blocked()
        stats = pool.statistics()
        assert (stats.workers, stats.running) == (4, 4)
        assert_balanced(pool)


async def test_rate_tokens_are_reported_to_opentelemetry(
    autojump_clock: trio.abc.Clock,
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    async with trio_pool.open_pool(
        2, rate=1, burst=3, name="paced", meter_provider=provider
    ) as pool:
        pool.submit_nowait(trio.sleep, 0)
        await trio.testing.wait_all_tasks_blocked()
        data = reader.get_metrics_data()
    assert data is not None
    tokens: list[object] = [
        point.value  # type: ignore[union-attr]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "trio_pool.rate.tokens"
        for point in metric.data.data_points
    ]
    assert tokens == [2]


async def test_a_pool_without_a_rate_reports_no_tokens() -> None:
    async with trio_pool.open_pool(1) as pool:
        assert pool.statistics().rate_tokens is None
        assert books(pool).rate_next_at is None


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rate": 0}, ValueError, "rate must be > 0 and finite .* not 0"),
        ({"rate": -1.5}, ValueError, "rate must be > 0 and finite .* not -1.5"),
        ({"rate": math.nan}, ValueError, "rate must be > 0 and finite .* not nan"),
        ({"rate": math.inf}, ValueError, "rate must be > 0 and finite .* not inf"),
        ({"rate": 10**400}, ValueError, "rate must be > 0 and finite"),
        ({"rate": 1e-310}, ValueError, r"rate must be >= 1e-09 per .* not 1e-310"),
        ({"rate": 5e-10}, ValueError, r"rate must be >= 1e-09 per .* not 5e-10"),
        ({"rate": "5"}, TypeError, "rate must be a number .* or None, not '5'"),
        ({"rate": True}, TypeError, "rate must be a number .* or None, not True"),
        ({"rate": 1, "burst": 0}, ValueError, "burst must be >= 1, not 0"),
        ({"rate": 1, "burst": 1.5}, TypeError, "burst must be an int, not 1.5"),
        ({"burst": 5}, ValueError, r"burst=5 needs a rate \(rate=None: no limit\)"),
    ],
)
def test_bad_rate_arguments_are_refused(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        trio_pool.open_pool(1, **kwargs)  # type: ignore[arg-type]


async def test_the_smallest_rate_still_limits() -> None:
    # Found by review: rate=1e-310 passed the check, 1/rate overflowed and
    # every start was allowed. The smallest rate accepted keeps its limit,
    # with the largest burst too.
    async with trio_pool.open_pool(3, rate=MIN_RATE, burst=2) as pool:
        jobs = [pool.submit_nowait(trio.sleep_forever) for _ in range(3)]
        await trio.testing.wait_all_tasks_blocked()
        assert (pool.statistics().running, pool.statistics().queued) == (2, 1)
        for job in jobs:
            job.cancel()
    async with trio_pool.open_pool(1, rate=MIN_RATE, burst=MAX_BURST) as pool:
        assert pool.statistics().rate_tokens == MAX_BURST


async def test_a_submitter_waiting_for_its_key_does_not_hold_up_others(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Found by review: with a rate, capacity 0 and keys, a submitter blocked
    # on a saturated key kept another key's job from an idle worker.
    async with trio_pool.open_pool(
        2, capacity=0, rate=1, burst=2, per_key_limit=1, timings=True
    ) as pool:
        long = pool.submit_nowait(trio.sleep, 100, key="a")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit_blocking, pool, "a")
            await trio.sleep(5)  # the bucket is full again, a worker idle
            other = await pool.submit(sleep_and_return, 1, key="b")
            assert trio.current_time() == 5
            assert pool.statistics().rate_tokens == 1
            await other.wait()
            assert other.started_at == 5
            long.cancel()


async def test_no_token_is_spent_when_only_saturated_keys_wait(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Found by review: a worker finishing while only a submitter of a
    # saturated key waited spent a token and started nothing.
    async with trio_pool.open_pool(
        2, capacity=0, rate=1, burst=2, per_key_limit=1
    ) as pool:
        long = pool.submit_nowait(trio.sleep, 100, key="a")
        short = pool.submit_nowait(trio.sleep, 3)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit_blocking, pool, "a")
            await short.wait()
            await trio.testing.wait_all_tasks_blocked()
            assert pool.statistics().rate_tokens == 2
            long.cancel()


async def test_a_burst_starts_at_one_instant_despite_float_rounding(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Found by review: 1.3 - 1.0 != 0.3 put a burst's second start one ulp
    # after the first.
    async with trio_pool.open_pool(2, rate=1, burst=2, timings=True) as pool:
        await trio.sleep(0.3)
        jobs = [pool.submit_nowait(sleep_and_return, 0) for _ in range(2)]
        await pool.join()
        assert [job.started_at for job in jobs] == [0.3, 0.3]


async def submit_blocking(pool: trio_pool.Pool, key: str | None) -> None:
    """Submit a 1 s job, waiting for room as long as it takes."""
    await pool.submit(trio.sleep, 1, key=key)


@pytest.mark.parametrize("capacity", [0, 3])
@pytest.mark.parametrize("seed", range(3))
async def test_a_paced_offer_carries_out_the_one_decision(
    autojump_clock: trio.abc.Clock,
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    capacity: int,
) -> None:
    """`PacedCore.offer` inlines `_decide`'s common case: before each offer
    the test asks `_decide` what the pool would do, and checks that the
    offer did just that (handed over, queued, a worker started, refused) and
    woke the pacer exactly when the full decision would (a job queued beside
    an idle worker, none woken, without a token; a job refused while a
    worker idles or the pool may grow)."""
    rng = random.Random(seed)
    seen: collections.Counter[int] = collections.Counter()
    behind: list[bool] = []
    async with trio_pool.open_pool(
        1, max_workers=3, capacity=capacity, rate=5, burst=2, idle_timeout=0.5
    ) as pool:
        core = pool._core
        assert isinstance(core, PacedCore)
        offer, wake_pacer = core.offer, core._wake_pacer
        woken: list[bool] = []

        def wake() -> None:
            woken.append(True)
            wake_pacer()

        def checked_offer(job: Any, counted: bool = False) -> int:
            crew, queue, rate = core._crew, core._queue, core._rate
            assert rate is not None
            waiting = bool(core._waiters) and core._blocked_ahead()
            behind.append(waiting)
            decision = core._decide(True, waiting)
            seen[decision] += 1
            free = bool(crew.idle) and not crew.waking
            no_token = not rate.ready(core._now())
            may_grow = len(crew.workers) < core._growth_limit
            wakes = (decision in (QUEUE, GROW) and free and no_token) or (
                decision == REFUSE and (bool(crew.idle) or may_grow)
            )
            workers, live = len(crew.workers), queue.live
            grows = decision == GROW and live + 1 > crew.starting
            woken.clear()
            accepted = offer(job, counted)
            assert bool(accepted) == (decision != REFUSE)
            assert bool(woken) == wakes, (decision, free, no_token)
            if decision in (HAND, WAKE):
                assert isinstance(job._holder, Worker)
            elif decision in (QUEUE, GROW):
                assert job._holder is None
                assert queue.live == live + 1
                assert len(crew.workers) == workers + grows
            return accepted

        monkeypatch.setattr(core, "offer", checked_offer)
        monkeypatch.setattr(core, "_wake_pacer", wake)
        async with trio.open_nursery() as submitters:
            for _ in range(150):
                action = rng.random()
                if action < 0.5:
                    with contextlib.suppress(trio_pool.PoolOverloaded):
                        pool.submit_nowait(trio.sleep, rng.choice([0, 0.1, 0.3, 1]))
                elif action < 0.6:  # a submitter that may block
                    submitters.start_soon(pool.submit, trio.sleep, 0.2)
                elif action < 0.7:
                    await trio.sleep(rng.choice([0.05, 0.2, 1]))
                else:
                    await trio.testing.wait_all_tasks_blocked()
                assert_balanced(pool)
        await pool.join()
    assert {HAND, REFUSE} | ({QUEUE, GROW} if capacity else set()) <= set(seen), seen
    assert any(behind), "no offer behind a blocked submitter"


async def test_a_paced_map_queues_its_items_in_batches(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A paced pool's `offer` queues the jobs `_queue_fit` counts as the base
    one does, so a map offers them in batches (`_offer_queues_as_fit`), and
    each starts as the rate and the workers allow."""
    started: dict[int, float] = {}

    async def note(item: int) -> int:
        started[item] = trio.current_time()
        await trio.sleep(1)
        return item

    async with trio_pool.open_pool(2, rate=10, capacity=8) as pool:
        await trio.testing.wait_all_tasks_blocked()  # both workers idle
        core = pool._core
        make_jobs, sizes = core.make_jobs, list[int]()

        def counted_make_jobs(*args: Any) -> Any:
            jobs = make_jobs(*args)
            sizes.append(len(jobs))
            return jobs

        monkeypatch.setattr(core, "make_jobs", counted_make_jobs)
        async with pool.map(note, range(8)) as results:
            assert [value async for value in results] == list(range(8))
        assert max(sizes) > 1, sizes
        assert [started[item] for item in range(8)] == pytest.approx(
            [0, 0.1, 1, 1.1, 2, 2.1, 3, 3.1]
        )
        assert_balanced(pool)


async def test_a_token_due_within_float_rounding_is_the_pacers(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A blocked submitter waits for a token beside an idle worker; a
    nanosecond before the token is due, `StartRate.ready` sees it (its slack
    for float rounding), and the pacer wakes for it then: the books count
    the pacer due within the same slack, so no invariant fails (a sleep to
    2.8 ended at 2.7999999999999994 with the pacer due at
    2.8000000000000003; found by the paced offer's test above)."""
    async with trio_pool.open_pool(1, rate=5, capacity=0) as pool:
        pool.submit_nowait(trio.sleep, 0)  # the token of 0 s
        await trio.testing.wait_all_tasks_blocked()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.submit, trio.sleep, 0)
            await trio.testing.wait_all_tasks_blocked()
            assert books(pool).waiting_jobs
            await trio.sleep_until(0.2 - 1e-12)
            assert_balanced(pool)
        await pool.join()
        assert_balanced(pool)
