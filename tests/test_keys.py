"""Per-key limits: at most N jobs of a key at once, no head-of-line blocking."""

# pyright: reportPossiblyUnboundVariable=false

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing

import trio_pool

from .helpers import (
    assert_balanced,
    assert_no_bookkeeping,
    books,
    check_invariants,
    sleep_and_return,
)


def starts(jobs: list[trio_pool.Job[object]]) -> list[float | None]:
    return [job.started_at for job in jobs]


async def test_a_saturated_key_does_not_hold_up_other_keys(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(8, per_key_limit=2, timings=True) as pool:
        a = [pool.submit_nowait(sleep_and_return, 1, key="a") for _ in range(6)]
        b = [pool.submit_nowait(sleep_and_return, 1, key="b") for _ in range(2)]
        free = pool.submit_nowait(sleep_and_return, 1)  # no key: no limit
        await trio.testing.wait_all_tasks_blocked()
        stats = pool.statistics()
        assert (stats.running, stats.waiting_for_key, stats.active_keys) == (5, 4, 2)
        assert stats.queued == 4
        assert_balanced(pool)
        await pool.join()
        assert starts(a) == [0, 0, 1, 1, 2, 2]
        assert starts(b) == [0, 0]
        assert free.started_at == 0


async def test_keys_take_turns(autojump_clock: trio.abc.Clock) -> None:
    order: list[str] = []

    async def record(label: str) -> None:
        order.append(label)
        await trio.sleep(1)

    async with trio_pool.open_pool(1, per_key_limit=1) as pool:
        for label in ["a1", "a2", "a3", "b1", "b2", "c1"]:
            pool.submit_nowait(record, label, key=label[0])
        await pool.join()
    assert order == ["a1", "b1", "c1", "a2", "b2", "a3"]


async def test_an_idle_key_leaves_nothing_behind(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(4, capacity=16, per_key_limit=1) as pool:
        most = 0
        for n in range(20_000):
            await pool.submit(trio.sleep, 0.001, key=f"host-{n}")
            most = max(most, len(books(pool).key_active))
        await pool.join()
        assert most <= 4 + 16
        snapshot = books(pool)
        assert (snapshot.key_active, snapshot.key_waiting, snapshot.held) == (
            {},
            {},
            0,
        )
        stats = pool.statistics()
        assert (stats.waiting_for_key, stats.active_keys) == (0, 0)


async def test_jobs_waiting_for_their_key_count_against_capacity(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=2, per_key_limit=1) as pool:
        pool.submit_nowait(trio.sleep, 5, key="a")  # runs
        aside = [pool.submit_nowait(trio.sleep, 5, key="a") for _ in range(2)]
        with pytest.raises(trio_pool.PoolOverloaded):
            pool.submit_nowait(trio.sleep, 5, key="b")
        blocked = await pool.submit(trio.sleep, 1, key="b")  # room at t=5
        assert trio.current_time() == 5
        assert blocked.state is trio_pool.JobState.QUEUED
        await pool.join()
        assert all(job.done for job in aside)
        assert_balanced(pool)


async def test_cancelling_a_job_that_waits_for_its_key(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2, per_key_limit=1, timings=True) as pool:
        running = pool.submit_nowait(trio.sleep, 5, key="a")
        aside = pool.submit_nowait(trio.sleep, 5, key="a")
        last = pool.submit_nowait(sleep_and_return, 1, key="a")
        aside.cancel()
        assert aside.state is trio_pool.JobState.CANCELLED
        assert pool.statistics().waiting_for_key == 1
        assert_balanced(pool)
        running.cancel()  # at its next checkpoint; the key's next one starts
        await pool.join()
        assert last.started_at == 0
        assert_balanced(pool)
        assert books(pool).key_active == {}


async def test_a_key_s_next_job_goes_to_an_idle_worker_when_one_is_cancelled(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(3, per_key_limit=1, timings=True) as pool:
        blocker = pool.submit_nowait(trio.sleep, 10)
        queued = pool.submit_nowait(trio.sleep, 10, key="a")
        await trio.testing.wait_all_tasks_blocked()
        nxt = pool.submit_nowait(sleep_and_return, 1, key="a")
        await trio.sleep(1)
        queued.cancel()
        await pool.join()
        assert nxt.started_at == 1
        assert blocker.done


async def test_capacity_zero_lets_other_keys_submitters_by(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2, capacity=0, per_key_limit=1) as pool:
        pool.submit_nowait(trio.sleep, 10, key="a")
        pool.submit_nowait(trio.sleep, 1)  # the second worker
        got: dict[str, float] = {}

        async def submit(key: str) -> None:
            await pool.submit(trio.sleep, 1, key=key)
            got[key] = trio.current_time()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit, "a")  # waits for key a: until 10
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(submit, "b")  # waits only for a worker: 1
        assert got == {"b": 1, "a": 10}


async def test_a_submitter_behind_a_saturated_key_is_admitted_as_a_new_job_would_be(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A blocked submitter whose key is saturated and finds no place aside
    lets those behind it by: a submitter behind it whose job may run is
    admitted as soon as a new job in its place would be (here a worker a
    resize starts is room for one queued job, never for one set aside),
    before any new job (issue 17: admission is one decision)."""
    release = trio.Event()
    async with trio_pool.open_pool(1, capacity=1, per_key_limit=1) as pool:
        pool.submit_nowait(release.wait, key="a")  # runs
        pool.submit_nowait(release.wait, key="a")  # set aside: capacity used
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(pool.submit, release.wait, key="a"))
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(pool.submit, release.wait)  # no key: behind it
            await trio.testing.wait_all_tasks_blocked()
            assert pool.statistics().waiting_submitters == 2
            pool.resize(1, max_workers=2)  # one worker starts: a queue place
            assert pool.statistics().waiting_submitters == 1  # the second is in
            check_invariants(pool)
            with pytest.raises(trio_pool.PoolOverloaded):
                pool.submit_nowait(release.wait)  # the place was the submitter's
            release.set()
        await pool.join()
        assert_balanced(pool)


async def test_graceful_shutdown_runs_every_job_waiting_for_its_key(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(4, per_key_limit=1) as pool:
        jobs = [pool.submit_nowait(trio.sleep, 1, key="a") for _ in range(3)]
        await pool.shutdown()
        assert trio.current_time() == 3
    assert all(job.state is trio_pool.JobState.SUCCEEDED for job in jobs)
    assert_no_bookkeeping(pool)


async def test_shutdown_past_its_grace_cancels_jobs_waiting_for_their_key(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(4, per_key_limit=1) as pool:
        jobs = [pool.submit_nowait(trio.sleep, 1, key="a") for _ in range(3)]
        await pool.shutdown(grace_period=1.5)
    assert [job.state.value for job in jobs] == ["succeeded", "cancelled", "cancelled"]
    assert_no_bookkeeping(pool)
    snapshot = books(pool)
    assert (snapshot.key_active, snapshot.key_waiting) == ({}, {})


async def test_an_error_in_the_body_cancels_jobs_waiting_for_their_key(
    autojump_clock: trio.abc.Clock,
) -> None:
    with pytest.raises(KeyError):
        async with trio_pool.open_pool(2, per_key_limit=1) as pool:
            jobs = [pool.submit_nowait(trio.sleep, 1, key="a") for _ in range(3)]
            await trio.sleep(0.5)
            raise KeyError("out")
    assert all(job.state is trio_pool.JobState.CANCELLED for job in jobs)
    assert_no_bookkeeping(pool)


async def test_cancelling_a_queued_job_never_hands_it_to_a_worker(
    mock_clock: trio.testing.MockClock,
) -> None:
    # Found by the state machine: the key's next job joined the queue while
    # the cancelled one was not yet marked done, and an idle worker was
    # handed the cancelled job from the queue's head.
    async with trio_pool.open_pool(2, rate=1, per_key_limit=1) as pool:
        running = pool.submit_nowait(trio.sleep, 10)
        await trio.testing.wait_all_tasks_blocked()  # one worker busy, one idle
        queued = pool.submit_nowait(trio.sleep, 1, key="k")  # waits for a token
        aside = pool.submit_nowait(sleep_and_return, 1, "aside", key="k")
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(1)  # a token is due, and the pacer has not run yet
        queued.cancel()  # the key's next job joins the queue and may start
        assert_balanced(pool)
        assert queued.state is trio_pool.JobState.CANCELLED
        mock_clock.autojump_threshold = 0
        assert await aside.result() == "aside"
        running.cancel()
        assert_balanced(pool)


async def test_keys_with_a_rate_limit(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(
        4, per_key_limit=1, rate=2, burst=2, timings=True
    ) as pool:
        a = [pool.submit_nowait(sleep_and_return, 1, key="a") for _ in range(2)]
        b = [pool.submit_nowait(sleep_and_return, 1, key="b") for _ in range(2)]
        await pool.join()
        assert starts(a) == [0, 1]
        assert starts(b) == [0, 1]  # key b's second waited for its key, then a token
        assert_balanced(pool)


async def test_run_takes_a_key(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(2, per_key_limit=1) as pool:

        async def run() -> None:
            await pool.run(trio.sleep, 1, key="a")

        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(run)
        assert trio.current_time() == 2


async def test_key_statistics_and_telemetry(autojump_clock: trio.abc.Clock) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    async with trio_pool.open_pool(
        4, per_key_limit=1, name="keyed", meter_provider=provider
    ) as pool:
        for key in "aab":
            pool.submit_nowait(trio.sleep, 1, key=key)
        data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, object] = {
        metric.name: [point.value for point in metric.data.data_points]  # type: ignore[union-attr]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name.startswith("trio_pool.key.")
    }
    assert found == {"trio_pool.key.waiting_jobs": [1], "trio_pool.key.active": [2]}


async def test_a_pool_without_per_key_limit_reports_no_keys() -> None:
    async with trio_pool.open_pool(1) as pool:
        stats = pool.statistics()
        assert (stats.waiting_for_key, stats.active_keys) == (None, None)


async def test_bad_keys_are_refused_before_anything_changes() -> None:
    async with trio_pool.open_pool(1, name="plain") as plain:
        with pytest.raises(ValueError, match=r"key='a' needs a pool opened with"):
            plain.submit_nowait(trio.sleep, 0, key="a")
        assert plain.statistics().submitted == 0
    async with trio_pool.open_pool(1, per_key_limit=1) as pool:
        with pytest.raises(TypeError, match=r"key must be hashable, not \['a'\]"):
            await pool.submit(trio.sleep, 0, key=["a"])  # type: ignore[arg-type]
        assert pool.statistics().submitted == 0


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0, ValueError, "per_key_limit must be >= 1, not 0"),
        (2.0, TypeError, "per_key_limit must be an int, not 2.0"),
        (True, TypeError, "per_key_limit must be an int, not True"),
    ],
)
def test_bad_per_key_limits_are_refused(
    value: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        trio_pool.open_pool(1, per_key_limit=value)  # type: ignore[arg-type]
