"""pool.map: order, completion order, async sources, endless sources, failures,
cancellation of the consumer, and the bound on items pulled ahead."""

from __future__ import annotations

import itertools
import operator
from collections.abc import AsyncIterator, Iterator
from typing import Any

import outcome
import pytest
import trio

import trio_pool

from .helpers import books, check_invariants


async def slow_square(n: int) -> int:
    await trio.sleep(10 - n)  # later items finish first
    return n * n


async def square(n: int) -> int:
    await trio.sleep(1)
    return n * n


async def square_after(n: int) -> int:
    await trio.sleep(n)  # item n takes n seconds
    return n * n


async def fail_on_three(n: int) -> int:
    await trio.sleep(1)
    if n == 3:
        raise ValueError(f"bad item {n}")
    return n


def assert_idle(pool: trio_pool.Pool) -> None:
    stats = pool.statistics()
    assert (stats.queued, stats.running) == (0, 0)
    assert stats.submitted == stats.succeeded + stats.failed + stats.cancelled + (
        stats.timed_out
    )
    snapshot = books(pool)
    assert snapshot.backlog == 0
    assert not snapshot.waiting_jobs
    assert not snapshot.drain_parked


async def test_ordered_results_follow_the_input(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(10) as pool:
        async with pool.map(slow_square, range(10)) as results:
            assert [r async for r in results] == [n * n for n in range(10)]
        assert trio.current_time() == 10
        assert_idle(pool)


async def test_unordered_results_come_as_jobs_finish(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(10) as pool:
        async with pool.map(slow_square, range(10), ordered=False) as results:
            got = [r async for r in results]
        assert got == [n * n for n in reversed(range(10))]


async def test_async_source(autojump_clock: trio.abc.Clock) -> None:
    async def numbers() -> AsyncIterator[int]:
        for n in range(5):
            await trio.sleep(0.5)
            yield n

    async with trio_pool.open_pool(2) as pool:
        async with pool.map(square, numbers()) as results:
            assert [r async for r in results] == [0, 1, 4, 9, 16]


async def test_endless_source_with_break_leaves_nothing_running(
    autojump_clock: trio.abc.Clock,
) -> None:
    pulled = 0

    def endless() -> Iterator[int]:
        nonlocal pulled
        for n in itertools.count():
            pulled += 1
            yield n

    async with trio_pool.open_pool(4, capacity=6) as pool:
        async with pool.map(square, endless()) as results:
            async for value in results:
                assert results.pulled_ahead <= 20  # twice the pool's size
                if value >= 25:
                    break
        assert pulled <= 6 + 20  # the six delivered and one window
        assert_idle(pool)
        stats = pool.statistics()
        assert stats.cancelled > 0
        assert stats.succeeded + stats.cancelled == stats.submitted
        assert await pool.run(square, 3) == 9  # still usable


async def test_window_bounds_items_pulled_ahead(autojump_clock: trio.abc.Clock) -> None:
    pulled = 0

    def counting() -> Iterator[int]:
        nonlocal pulled
        for n in range(1000):
            pulled += 1
            yield n

    async with trio_pool.open_pool(3, capacity=5) as pool:
        async with pool.map(square, counting()) as results:
            async for value in results:
                assert pulled - (value and int(value**0.5) + 1) <= 16
                assert results.pulled_ahead <= 16  # twice the pool's size
                await trio.sleep(5)  # a slow consumer pulls nothing extra
                assert results.pulled_ahead <= 16
                if value >= 100:
                    break
        assert pulled <= 11 + 16


async def test_failure_raises_at_its_place_and_cancels_the_rest(
    autojump_clock: trio.abc.Clock,
) -> None:
    seen: list[int] = []
    async with trio_pool.open_pool(2) as pool:
        with pytest.raises(ValueError, match="bad item 3"):
            async with pool.map(fail_on_three, range(10)) as results:
                async for value in results:
                    seen.append(value)
        assert seen == [0, 1, 2]
        assert_idle(pool)
        assert pool.statistics().failed == 1
        assert pool.statistics().cancelled > 0


async def test_outcomes_mode_keeps_going_past_failures(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2) as pool:
        async with pool.map(fail_on_three, range(6), outcomes=True) as results:
            got = [r async for r in results]
    assert [type(r) for r in got] == [outcome.Value] * 3 + [outcome.Error] + [
        outcome.Value
    ] * 2
    error = got[3]
    assert isinstance(error, outcome.Error)
    assert isinstance(error.error, ValueError)
    assert [r.unwrap() for r in got if isinstance(r, outcome.Value)] == [0, 1, 2, 4, 5]


async def test_unordered_failure(autojump_clock: trio.abc.Clock) -> None:
    async with trio_pool.open_pool(4) as pool:
        with pytest.raises(ValueError, match="bad item 3"):
            async with pool.map(fail_on_three, range(8), ordered=False) as results:
                async for _ in results:
                    pass
        assert_idle(pool)


async def test_consumer_cancelled_cancels_its_jobs(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(4) as pool:
        with trio.move_on_after(2.5):
            async with pool.map(square, range(100)) as results:
                async for _ in results:
                    pass
        assert trio.current_time() == 2.5
        assert_idle(pool)
        stats = pool.statistics()
        assert stats.succeeded == 8
        assert stats.cancelled == stats.submitted - 8


async def test_consumer_raising_cancels_its_jobs(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(4) as pool:
        with pytest.raises(KeyError):
            async with pool.map(square, range(100)) as results:
                async for _ in results:
                    raise KeyError("consumer failed")
        assert_idle(pool)


async def test_per_item_options_pass_through(autojump_clock: trio.abc.Clock) -> None:
    async def sleep_for(seconds: float) -> float:
        await trio.sleep(seconds)
        return seconds

    async with trio_pool.open_pool(2) as pool:
        async with pool.map(
            sleep_for, [1, 5, 2], timeout=3, name="nap", outcomes=True
        ) as results:
            got = [r async for r in results]
        assert isinstance(got[1], outcome.Error)
        assert isinstance(got[1].error, trio_pool.JobTimeout)
        assert "nap" in str(got[1].error)
        assert pool.statistics().timed_out == 1


async def test_iterating_without_async_with_is_refused() -> None:
    # A type error too (tests/static_types/api.py); at run time a TypeError
    # that shows the right form.
    async with trio_pool.open_pool(1) as pool:
        results: Any = pool.map(square, range(3))
        with pytest.raises(
            TypeError, match=r"write 'async with pool\.map\(\.\.\.\) as results:'"
        ):
            async for _ in results:
                pass  # pragma: no cover


async def test_bad_arguments_fail_at_once() -> None:
    async with trio_pool.open_pool(1) as pool:
        with pytest.raises(TypeError, match="items must be an iterable"):
            pool.map(square, 5)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="expected an async function"):
            pool.map(len, [1])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout must be >= 0"):
            pool.map(square, [1], timeout=-1)


async def test_map_on_a_closed_pool_raises_pool_closed() -> None:
    async with trio_pool.open_pool(1) as pool:
        pool.close()
        with pytest.raises(trio_pool.PoolClosed):
            async with pool.map(square, [1]) as results:
                async for _ in results:
                    pass  # pragma: no cover


async def test_map_shares_the_pool_fairly_with_submitters(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2, capacity=2) as pool:
        other = await pool.submit(square, 7)
        async with pool.map(square, range(6)) as results:
            assert [r async for r in results] == [n * n for n in range(6)]
        assert await other.result() == 49


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_failing_source_comes_after_the_results_before_it(
    autojump_clock: trio.abc.Clock, ordered: bool
) -> None:
    # Found by review: unordered, the source's error came at once and the
    # accepted jobs still running were cancelled.
    def source() -> Iterator[int]:
        yield from (3, 1, 2)
        raise KeyError("the source's own")

    async with trio_pool.open_pool(3) as pool:
        got: list[int] = []
        with pytest.raises(KeyError, match="the source's own"):
            async with pool.map(square_after, source(), ordered=ordered) as results:
                async for value in results:
                    got.append(value)
        assert got == ([9, 1, 4] if ordered else [1, 4, 9])
        assert pool.statistics().cancelled == 0


@pytest.mark.parametrize("ordered", [True, False])
async def test_closing_the_pool_mid_map_delivers_what_it_accepted(
    autojump_clock: trio.abc.Clock, ordered: bool
) -> None:
    async def endless() -> AsyncIterator[int]:
        for n in itertools.count(1):
            yield n
            await trio.sleep(0.4)

    async with trio_pool.open_pool(2) as pool:
        got: list[int] = []
        with pytest.raises(trio_pool.PoolClosed):
            async with pool.map(square_after, endless(), ordered=ordered) as results:
                async for value in results:
                    got.append(value)
                    if value == 1:
                        pool.close()
        # items 1 to 3 were accepted by the close (at 1 s), item 4 refused
        assert sorted(got) == [1, 4, 9]
        assert pool.statistics().cancelled == 0


@pytest.mark.parametrize("capacity", [0, 3])
async def test_a_sync_source_offered_in_batches_keeps_order_and_window(
    autojump_clock: trio.abc.Clock, capacity: int
) -> None:
    # A sync source is pulled in batches up to the next schedule point and
    # each batch offered in one call: the pool refuses mid-batch (capacity 0
    # or 3 with 2 workers), the feeder waits and offers the rest in order.
    # (A list is batched, a generator is not: its pulls are counted by what
    # the list's iterator has left.)
    source = iter(list(range(200)))

    async with trio_pool.open_pool(2, capacity=capacity) as pool:
        window = 2 * (2 + capacity)
        got: list[int] = []
        async with pool.map(square, source) as results:
            async for value in results:
                assert results.pulled_ahead <= window
                pulled = 200 - operator.length_hint(source)
                assert pulled - len(got) <= window
                got.append(value)
        assert got == [n * n for n in range(200)]
        assert_idle(pool)


@pytest.mark.parametrize(
    "options", [{"rate": 10.0}, {"per_key_limit": 1}], ids=["paced", "keyed"]
)
async def test_a_maps_batch_in_a_pool_with_features(
    autojump_clock: trio.abc.Clock, options: dict[str, Any]
) -> None:
    # A paced pool has its own offer, a pool with keys its own records: the
    # map's batch goes one by one, beside jobs set aside for their key.
    async with trio_pool.open_pool(1, capacity=3, **options) as pool:
        if "per_key_limit" in options:
            for _ in range(3):  # one runs, two wait aside
                pool.submit_nowait(trio.sleep, 1, key="k")
        async with pool.map(square, range(20)) as results:
            got: list[int] = []
            async for value in results:
                check_invariants(pool)
                got.append(value)
        assert got == [n * n for n in range(20)]
        assert_idle(pool)


@pytest.mark.parametrize("batched", [True, False], ids=["list", "generator"])
async def test_pulled_ahead_is_what_was_pulled_and_not_delivered(
    autojump_clock: trio.abc.Clock, batched: bool
) -> None:
    # The window is two counts (the room the feeder holds, the room the
    # consumer gave back since): together they count exactly, whichever side
    # last moved, and the feeder never runs past them.
    items = list(range(300))
    listed = iter(items)
    pulled = 0

    def generated() -> Iterator[int]:
        nonlocal pulled
        for n in items:
            pulled += 1
            yield n

    source = listed if batched else generated()
    async with trio_pool.open_pool(2, capacity=3) as pool:
        window = 2 * (2 + 3)
        delivered = 0
        async with pool.map(square, source) as results:
            async for value in results:
                delivered += 1
                if batched:
                    pulled = len(items) - operator.length_hint(listed)
                assert results.pulled_ahead == pulled - delivered <= window
                assert value == (delivered - 1) ** 2
                if delivered % 7 == 0:
                    await trio.sleep(5)  # the feeder fills the window, waits
                    # (out of room, it is woken when half the window is free)
                    assert window // 2 < results.pulled_ahead <= window
        assert delivered == len(items)
        assert results.pulled_ahead == 0


async def test_an_ordered_feeder_leaves_a_consumer_waiting_for_the_oldest_job(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Waiting for the oldest job, the consumer is woken by that job's end,
    # not by each newer job the feeder (pulling one by one) appends.
    consumer = trio.lowlevel.current_task()
    wakes: list[float] = []

    class CountWakes(trio.abc.Instrument):
        def task_scheduled(self, task: trio.lowlevel.Task) -> None:
            if task is consumer:
                wakes.append(trio.current_time())

    async def slowly() -> AsyncIterator[int]:
        for n in range(10):
            yield n
            await trio.sleep(0.5)

    async def first_is_slow(n: int) -> int:
        await trio.sleep(10 if n == 0 else 0)
        return n

    async with trio_pool.open_pool(20, capacity=20) as pool:
        async with pool.map(first_is_slow, slowly()) as results:
            trio.lowlevel.add_instrument(CountWakes())
            got = [value async for value in results]
    assert got == list(range(10))
    # Job 0 accepted, then the source's end (the feeder's): not the 9 others
    # (before, each woke it, at 0.5, 1.0, ...).
    assert [t for t in wakes if t < 10] == [0, 5]
