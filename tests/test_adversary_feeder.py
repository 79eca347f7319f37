"""Issue 17, adversary: attacks on the map's feeder as its own object
(`Feeder`, the window split into the room it holds and the room given
back) and on the one admission rule of blocked submitters, through the
public API.

Two bugs found here: a Ctrl-C landing in the feeder as it waited for room
left a job behind (an ordered map's job, accepted as the Ctrl-C came, ran
on after the map's ``async with``; an unordered map's job, never accepted,
was waited for forever by its exit), and ``pulled_ahead`` counted the item
a source was still making (or raised instead of) as pulled.
"""

# The Ctrl-C tests trace private methods of the feeder, by their code.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import contextlib
import inspect
import itertools
import math
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from types import CodeType, ModuleType
from typing import Any

import pytest
import trio
import trio.testing

import trio_pool
from trio_pool import _core, _feeder, _map
from trio_pool._feeder import Feeder
from trio_pool._map import MapResults

from .helpers import assert_balanced, assert_no_bookkeeping, check_invariants
from .test_worker_interrupts import Interrupter, interrupt_each_hit


async def echo(item: int) -> int:
    await trio.sleep(1)
    return item


async def echo_after(item: int) -> int:
    """Item 0 takes 10 seconds, the others 1: newer jobs end first."""
    await trio.sleep(10 if item == 0 else 1)
    return item


# ------------------------------------------------------------ pulled_ahead


async def test_pulled_ahead_counts_no_item_an_async_source_is_still_making(
    autojump_clock: trio.abc.Clock,
) -> None:
    """While the feeder waits for the source's next item, that item is not
    pulled yet: everything pulled was delivered, so none is ahead."""
    gate = trio.Event()

    async def source() -> AsyncIterator[int]:
        yield 0
        yield 1
        await gate.wait()  # the feeder waits here for item 2
        yield 2

    async with trio_pool.open_pool(2, capacity=2) as pool:
        async with pool.map(echo, source()) as results:
            assert [await anext(results), await anext(results)] == [0, 1]
            await trio.testing.wait_all_tasks_blocked()
            assert results.pulled_ahead == 0
            gate.set()
            await trio.testing.wait_all_tasks_blocked()
            assert results.pulled_ahead == 1
            assert [value async for value in results] == [2]
            assert results.pulled_ahead == 0
        check_invariants(pool)


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_pulled_ahead_counts_no_item_a_source_raised_instead_of(
    autojump_clock: trio.abc.Clock, ordered: bool
) -> None:
    def source() -> Iterator[int]:
        yield 0
        yield 1
        raise ValueError("no item 2")

    async with trio_pool.open_pool(2, capacity=2) as pool:
        got: list[int] = []
        entered: list[MapResults[int]] = []
        with pytest.raises(ValueError, match="no item 2"):
            async with pool.map(echo, source(), ordered=ordered) as results:
                entered.append(results)
                async for value in results:
                    got.append(value)
        assert sorted(got) == [0, 1]
        assert entered[0].pulled_ahead == 0
        assert_balanced(pool)


# ------------------------------------------------------ the window's bound

SOURCES = ["list", "tuple", "range", "generator", "async generator"]
SHAPES = ["ordered", "unordered", "key", "priority"]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", SOURCES)
async def test_the_window_holds_for_every_source_and_shape(
    autojump_clock: trio.abc.Clock, kind: str, shape: str
) -> None:
    """Never more than ``2 * (max_workers + capacity)`` items pulled and not
    delivered, whatever the source and the map, with a consumer that lags;
    ``pulled_ahead`` says exactly how many (for sources that tell)."""
    count = 60
    pulled = 0

    def counted() -> Iterator[int]:
        nonlocal pulled
        for item in range(count):
            pulled += 1
            yield item

    async def counted_async() -> AsyncIterator[int]:
        for item in counted():
            yield item

    source: Any = {
        "list": list(range(count)),
        "tuple": tuple(range(count)),
        "range": range(count),
        "generator": counted(),
        "async generator": counted_async(),
    }[kind]
    exact = kind in ("generator", "async generator")

    def key_of(item: int) -> int:
        return item % 3

    ordered = shape != "unordered"
    key = key_of if shape == "key" else None
    priority = 2 if shape == "priority" else 0
    per_key_limit = 2 if shape == "key" else None
    async with trio_pool.open_pool(3, capacity=2, per_key_limit=per_key_limit) as pool:
        window = 2 * (3 + 2)
        delivered = 0
        got: list[int] = []
        async with pool.map(
            echo, source, ordered=ordered, key=key, priority=priority
        ) as results:
            async for value in results:
                got.append(value)
                delivered += 1
                assert 0 <= results.pulled_ahead <= window
                if exact:
                    assert results.pulled_ahead == pulled - delivered
                check_invariants(pool)
                if delivered % 4 == 0:
                    await trio.sleep(7)  # the feeder fills the window
                    assert results.pulled_ahead <= window
                    if exact:
                        assert results.pulled_ahead == pulled - delivered
                    check_invariants(pool)
        assert sorted(got) == list(range(count))
        assert results.pulled_ahead == 0
        assert_balanced(pool)


# ------------------------------------------------- no lost wake-up


@pytest.mark.parametrize("kind", ["generator", "async generator", "list"])
async def test_a_consumer_waiting_for_the_oldest_job_wakes_when_it_ends(
    autojump_clock: trio.abc.Clock, kind: str
) -> None:
    """Newer jobs end first and are not delivered before the oldest; the
    consumer, waiting for the oldest, gets it the moment it ends, then
    the rest at once."""

    def generated() -> Iterator[int]:
        yield from range(6)

    async def generated_async() -> AsyncIterator[int]:
        for item in range(6):
            yield item

    source: Any = {
        "generator": generated(),
        "async generator": generated_async(),
        "list": list(range(6)),
    }[kind]
    async with trio_pool.open_pool(6, capacity=0) as pool:
        start = trio.current_time()
        times: list[float] = []
        with trio.fail_after(100):  # (a lost wake-up: TooSlowError)
            async with pool.map(echo_after, source) as results:
                async for value in results:
                    times.append(trio.current_time() - start)
                    assert value == len(times) - 1
        assert times == [10] * 6


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_a_waiting_consumer_wakes_when_the_source_ends_or_fails(
    autojump_clock: trio.abc.Clock, ordered: bool
) -> None:
    """Every result delivered, the consumer waits for the source: it ends
    the loop (or raises the source's error) as soon as the source does."""
    for fails in (False, True):

        async def source() -> AsyncIterator[int]:
            yield 0
            await trio.sleep(5)
            if fails:  # noqa: B023
                raise ValueError("source failed")

        async with trio_pool.open_pool(2, capacity=2) as pool:
            start = trio.current_time()
            got: list[int] = []
            try:
                with trio.fail_after(100):  # (a lost wake-up: TooSlowError)
                    async with pool.map(echo, source(), ordered=ordered) as results:
                        async for value in results:
                            got.append(value)
            except ValueError:
                assert fails
            else:
                assert not fails
            assert got == [0]
            assert trio.current_time() - start == 5
            assert_balanced(pool)


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_results_stream_while_a_live_source_waits(
    autojump_clock: trio.abc.Clock, ordered: bool
) -> None:
    """The consumer, waiting with nothing accepted, is woken by the job the
    feeder adds (ordered) or by its end (unordered): each result comes as
    its job ends, not when the source next yields or ends."""

    async def slow_source() -> AsyncIterator[int]:
        for item in range(3):
            await trio.sleep(5)
            yield item
        await trio.sleep(100)

    async with trio_pool.open_pool(2, capacity=2) as pool:
        start = trio.current_time()
        times: list[float] = []
        with trio.fail_after(200):
            async with pool.map(echo, slow_source(), ordered=ordered) as results:
                async for value in results:
                    times.append(trio.current_time() - start)
                    assert value == len(times) - 1
        assert times == [6, 11, 16]


async def test_a_consumer_in_another_task_stops_when_the_block_is_left(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The body leaves the ``async with`` while a consumer task waits for a
    result: the consumer's loop ends, the jobs not delivered are cancelled."""
    async with trio_pool.open_pool(2, capacity=1) as pool:
        got: list[int] = []

        async def consume(results: MapResults[int]) -> None:
            async for value in results:
                got.append(value)

        async def endless() -> AsyncIterator[int]:
            item = 0
            while True:
                yield item
                item += 1

        with trio.fail_after(100):  # (the consumer never woken: TooSlowError)
            async with trio.open_nursery() as nursery:
                async with pool.map(echo_after, endless()) as results:
                    nursery.start_soon(consume, results)
                    await trio.sleep(3)  # job 0 takes 10: the consumer waits
                    assert got == []
        assert got == []
        stats = pool.statistics()
        assert (stats.running, stats.queued) == (0, 0)
        assert stats.cancelled >= 1
        assert_balanced(pool)


# --------------------------------------------- a source that uses the pool


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_a_source_that_resizes_the_pool_to_one_worker_and_no_queue(
    autojump_clock: trio.abc.Clock, ordered: bool
) -> None:
    """The window was set for the pool's first size; after a resize down to
    one worker every item still runs, once, and the books hold at each
    step."""
    async with trio_pool.open_pool(4, capacity=0) as pool:

        def source() -> Iterator[int]:
            for item in range(20):
                if item == 5:
                    pool.resize(1, max_workers=1)
                check_invariants(pool)
                yield item

        got: list[int] = []
        async with pool.map(echo, source(), ordered=ordered) as results:
            async for value in results:
                got.append(value)
                check_invariants(pool)
        assert sorted(got) == list(range(20))
        assert pool.statistics().succeeded == 20
        assert_balanced(pool)


@pytest.mark.parametrize("keyed", [False, True], ids=["", "keyed"])
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_a_source_one_by_one_that_closes_the_pool_delivers_what_came_before(
    autojump_clock: trio.abc.Clock, ordered: bool, asynchronous: bool, keyed: bool
) -> None:
    """Items accepted before the source closed the pool run and are
    delivered, in either order, then `PoolClosed` (the unordered map too:
    its error waits for the jobs in flight)."""
    async with trio_pool.open_pool(
        1, capacity=1, per_key_limit=1 if keyed else None
    ) as pool:
        await pool.submit(echo, 99)  # busy: the feeder waits for the pool

        def closing() -> Iterator[int]:
            for item in range(8):
                if item == 3:
                    pool.close()
                yield item

        async def closing_async() -> AsyncIterator[int]:
            for item in closing():
                yield item

        source = closing_async() if asynchronous else closing()
        got: list[int] = []
        with pytest.raises(trio_pool.PoolClosed):
            async with pool.map(
                echo, source, ordered=ordered, key=parity if keyed else None
            ) as results:
                async for value in results:
                    got.append(value)
                    check_invariants(pool)
        assert got == [0, 1, 2]
        assert_balanced(pool)


async def test_blocked_submitters_of_several_keys_beside_a_keyed_map(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A keyed map, submitters with and without keys blocked beside it and a
    task waiting for room: every job runs, none while its key is saturated,
    and the books (no submitter blocked while its job fits, no job queued
    while a worker idles unwoken) hold after every step."""
    running: dict[object, int] = {}
    most: dict[object, int] = {}
    blocked_at_once = 0

    def look(pool: trio_pool.Pool) -> None:
        nonlocal blocked_at_once
        check_invariants(pool)
        blocked = pool.statistics().waiting_submitters
        blocked_at_once = max(blocked_at_once, blocked)

    async def keyed(item: tuple[object, float]) -> object:
        key, seconds = item
        running[key] = running.get(key, 0) + 1
        most[key] = max(most.get(key, 0), running[key])
        await trio.sleep(seconds)
        running[key] -= 1
        return key

    async with (
        trio_pool.open_pool(3, capacity=2, per_key_limit=1) as pool,
        trio.open_nursery() as nursery,
    ):
        done: list[object] = []

        async def submit(key: object, seconds: float) -> None:
            job = await pool.submit(keyed, (key, seconds), key=key)
            look(pool)
            done.append(await job.result())

        async def watch() -> None:
            for _ in range(5):
                await pool.wait_for_room()
                look(pool)
                await trio.sleep(0.5)

        items = [("a", 2.0), ("a", 1.0), ("b", 3.0), ("c", 1.0), ("a", 1.0)] * 3
        for key, seconds in [("a", 1.5), ("b", 1.0), ("a", 0.5), ("d", 2.0)]:
            nursery.start_soon(submit, key, seconds)
        nursery.start_soon(watch)
        got: list[object] = []
        async with pool.map(
            keyed, items, key=lambda item: item[0], ordered=False
        ) as results:
            async for value in results:
                got.append(value)
                look(pool)
                for key in ("b", "e"):
                    nursery.start_soon(submit, key, 0.25)
                await trio.testing.wait_all_tasks_blocked()
                look(pool)
    assert sorted(map(str, got)) == sorted(key for key, _ in items)
    assert len(done) == 4 + 2 * len(items)
    assert max(most.values()) == 1
    assert blocked_at_once >= 3  # (the scenario blocks submitters)
    assert_no_bookkeeping(pool)


async def test_a_resize_admits_no_submitter_of_a_saturated_key_beyond_the_room(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A worker being started takes its job from the queue, never from the
    jobs set aside: the submitter of a saturated key, blocked for a place
    aside, stays blocked when a resize starts a worker, and one without a
    key gets in (the starting worker's place)."""
    async with (
        trio_pool.open_pool(1, capacity=1, per_key_limit=1) as pool,
        trio.open_nursery() as nursery,
    ):
        await pool.submit(echo, 1, key="a")  # runs
        await pool.submit(echo, 2, key="a")  # set aside (the capacity)
        blocked: list[trio_pool.Job[int]] = []

        async def submit(item: int, key: str | None) -> None:
            blocked.append(await pool.submit(echo, item, key=key))

        nursery.start_soon(submit, 3, "a")
        await trio.testing.wait_all_tasks_blocked()
        assert pool.statistics().waiting_submitters == 1
        pool.resize(1, max_workers=2)  # a worker starts for the waiting job
        check_invariants(pool)
        assert pool.statistics().waiting_submitters == 1
        nursery.start_soon(submit, 4, None)
        await trio.testing.wait_all_tasks_blocked()
        check_invariants(pool)
        with trio.fail_after(100):
            while len(blocked) < 2:  # (both admitted in time)
                await trio.sleep(0.5)
                check_invariants(pool)
        assert sorted([await job.result() for job in blocked]) == [3, 4]
        assert_balanced(pool)


async def test_blocked_submitters_beside_a_map_in_a_paced_pool(
    autojump_clock: trio.abc.Clock,
) -> None:
    """With a rate, blocked submitters and a map share the tokens; each
    start is paced and the books hold after every step."""
    async with (
        trio_pool.open_pool(2, capacity=1, rate=4, burst=1) as pool,
        trio.open_nursery() as nursery,
    ):
        starts: list[float] = []

        async def stamp(item: int) -> int:
            starts.append(trio.current_time())
            await trio.sleep(1)
            return item

        async def submit(item: int) -> None:
            job = await pool.submit(stamp, item)
            check_invariants(pool)
            await job.wait()

        for item in range(100, 104):
            nursery.start_soon(submit, item)
        got: list[int] = []
        async with pool.map(stamp, range(12)) as results:
            async for value in results:
                got.append(value)
                check_invariants(pool)
        assert got == list(range(12))
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(starts) == 16
    assert min(gaps) >= 0.25 - 1e-9
    assert_no_bookkeeping(pool)


# ------------------------------------------- leaving the block at any time


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
@pytest.mark.parametrize("kind", ["list", "generator", "async generator"])
@pytest.mark.parametrize("capacity", [0, 1])
async def test_leaving_the_block_at_any_moment_leaves_no_job(
    autojump_clock: trio.abc.Clock, kind: str, ordered: bool, capacity: int
) -> None:
    """Cancelled from outside at each half second (the feeder waiting for
    the pool, for room or for the source; the consumer waiting or not), or
    left by ``break`` after each result: once the block is left, none of
    the map's jobs is queued or running, and the books hold."""

    async def items() -> AsyncGenerator[int, None]:
        for item in range(10):
            await trio.sleep(0.25)
            yield item

    async def source(stack: contextlib.AsyncExitStack) -> Any:
        if kind == "list":
            return list(range(10))
        if kind == "generator":
            return iter(range(10))
        generated = items()
        # (the map leaves an async source it abandons to its owner to close)
        stack.push_async_callback(generated.aclose)
        return generated

    async with trio_pool.open_pool(1, capacity=capacity) as pool:
        for stop in range(1, 24):
            with trio.move_on_after(stop / 2):
                async with contextlib.AsyncExitStack() as stack:
                    pulled_from = await source(stack)
                    async with pool.map(echo, pulled_from, ordered=ordered) as results:
                        async for _ in results:
                            await trio.sleep(0.75)  # a consumer that lags
            stats = pool.statistics()
            assert (stats.running, stats.queued) == (0, 0), stop
            check_invariants(pool)
        for stop in range(10):
            delivered = 0
            async with contextlib.AsyncExitStack() as stack:
                pulled_from = await source(stack)
                async with pool.map(echo, pulled_from, ordered=ordered) as results:
                    async for _ in results:
                        delivered += 1
                        if delivered > stop:
                            break
            stats = pool.statistics()
            assert (stats.running, stats.queued) == (0, 0), stop
            check_invariants(pool)
        assert_balanced(pool)


# ------------------------------------------ closing the map from inside it


@pytest.mark.parametrize("closer", ["source", "job", "a task of the job"])
def test_closing_the_map_from_its_source_or_its_job_raises_instead_of_hanging(
    closer: str,
) -> None:
    """``aclose`` waits for the feeder and the jobs not delivered: called by
    the source (in the feeder's task) or by one of those jobs, it waited for
    itself, shielded, forever. It raises RuntimeError there (or in a task
    such a job started), which ends the map as the source's or a job's
    error does."""
    entered: list[MapResults[int]] = []
    got: list[int] = []

    async def job(item: int) -> int:
        await trio.sleep(1)
        if closer == "job" and item == 3:
            await entered[0].aclose()
        if closer == "a task of the job" and item == 3:
            refused: list[RuntimeError] = []

            async def close() -> None:
                try:
                    await entered[0].aclose()
                except RuntimeError as error:
                    refused.append(error)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(close)
            raise refused[0]
        return item

    async def source() -> AsyncIterator[int]:
        for item in range(8):
            if closer == "source" and item == 3:
                await entered[0].aclose()
            yield item

    async def main() -> None:
        async with trio_pool.open_pool(2, capacity=2) as pool:
            with pytest.raises(RuntimeError, match="would wait for itself"):
                async with pool.map(job, source()) as results:
                    entered.append(results)
                    async for value in results:
                        got.append(value)
            stats = pool.statistics()
            assert (stats.running, stats.queued) == (0, 0)
            assert_balanced(pool)

    trio.run(main, clock=deadlock_clock())
    assert got == [0, 1, 2]


# ------------------------------------------------ Ctrl-C in the feeder


class Deadlock(Exception):
    """Every task waits and nothing can wake one (a hang, made an error)."""


def parity(item: int) -> int:
    """An item's key: two keys."""
    return item % 2


def deadlock_clock() -> trio.testing.MockClock:
    """A MockClock that jumps at once to the next deadline, and ends the run
    (with `trio.TrioInternalError`) when there is none while every task
    waits: with nothing to wake them, it would spin forever. (MockClock is
    final: its instance's method is wrapped.)"""
    clock = trio.testing.MockClock(autojump_threshold=0)
    sleep_time = clock.deadline_to_sleep_time
    idle_turns = 0

    def deadline_to_sleep_time(deadline: float) -> float:
        nonlocal idle_turns
        if deadline == math.inf:
            idle_turns += 1
            if idle_turns > 1000:
                raise Deadlock("every task waits, and no deadline is set")
        else:
            idle_turns = 0
        return sleep_time(deadline)

    clock.deadline_to_sleep_time = deadline_to_sleep_time  # type: ignore[method-assign]
    return clock


def lines_of(code: CodeType) -> tuple[CodeType, list[int]]:
    """A function's code and the lines of its body."""
    lines = sorted(
        {
            line
            for _, _, line in code.co_lines()
            if line is not None and line != code.co_firstlineno
        }
    )
    return code, lines


WAITING_CODES: list[tuple[ModuleType, CodeType]] = [
    (_feeder, Feeder._feed_each.__code__),  # pyright: ignore[reportUnknownMemberType]
    (_feeder, Feeder._wait_to_accept.__code__),  # pyright: ignore[reportUnknownMemberType]
    (_map, MapResults._wait_for_room.__code__),  # pyright: ignore[reportUnknownMemberType]
    (_map, MapResults.__anext__.__code__),  # pyright: ignore[reportUnknownMemberType]
    (_map, MapResults._wait_for_result.__code__),  # pyright: ignore[reportUnknownMemberType]
]
UNREACHED = {
    # (the scenario's consumer is alone, delivers no failure, and waits
    # only for the pool: the feeder never waits for room as it waits)
    "raise trio.BusyResourceError(",
    '"another task is already iterating this pool.map() result"',
    "raise StopAsyncIteration",
    "return self._deliver(job)",
    "self._end()",
    "raise error",
    "self._feeder_lot.unpark()",
}
UNORDERED_UNREACHED = {  # (ordered maps' only)
    "oldest._listen(self._done)",
    "oldest._unlisten(self._done)",
}


def ctrl_c_cases() -> list[Any]:
    """Each line of `WAITING_CODES` the scenario runs, ordered and not,
    with keys and without."""
    cases: list[Any] = []
    for module, code in WAITING_CODES:
        source = inspect.getsource(module).splitlines()
        for line in lines_of(code)[1]:
            text = source[line - 1].strip()
            if text in UNREACHED:
                continue
            for ordered, keyed in itertools.product((True, False), repeat=2):
                if not ordered and text in UNORDERED_UNREACHED:
                    continue
                shape = ("ordered" if ordered else "unordered") + keyed * "-keyed"
                case_id = f"{code.co_name}:{line}:{text[:30]}-{shape}"
                cases.append(pytest.param(code, line, ordered, keyed, id=case_id))
    return cases


@pytest.mark.parametrize(("code", "line", "ordered", "keyed"), ctrl_c_cases())
def test_ctrl_c_as_the_feeder_waits_leaves_no_job_behind(
    monkeypatch: pytest.MonkeyPatch,
    code: CodeType,
    line: int,
    ordered: bool,
    keyed: bool,
) -> None:
    """Whichever line of the one-by-one feeder (its waits for room and for
    the pool) or of the consumer's wait a Ctrl-C lands on, the map's
    ``async with`` ends, and when it has, none of its jobs is left queued
    or running."""
    monkeypatch.setattr(_core, "YIELD_EVERY", 2)  # (its schedule points too)

    def attempt(interrupter: Interrupter) -> None:
        left: list[tuple[int, int]] = []
        pools: list[trio_pool.Pool] = []
        got: list[int] = []

        async def scenario() -> None:
            # One worker, no queue: the feeder waits for the pool; a window
            # of 2 and a consumer that lags: it waits for room too. (With
            # keys: a place in the queue, and the feeder waits for a place
            # aside for a saturated key's job.)
            async with trio_pool.open_pool(
                1, capacity=int(keyed), per_key_limit=1 if keyed else None
            ) as pool:
                pools.append(pool)

                def source() -> Iterator[int]:
                    yield from range(8)

                try:
                    async with pool.map(
                        echo, source(), ordered=ordered, key=parity if keyed else None
                    ) as results:
                        async for value in results:
                            got.append(value)
                            await trio.sleep(3)
                finally:
                    stats = pool.statistics()
                    left.append((stats.running, stats.queued))

        try:
            with interrupter.armed():
                trio.run(scenario, clock=deadlock_clock())
        except KeyboardInterrupt:
            assert interrupter.fired
        else:
            assert sorted(got) == list(range(8))
        assert left == [(0, 0)]
        for pool in pools:
            assert_no_bookkeeping(pool)

    interrupt_each_hit(code, line, 3, attempt)
