"""Issue 17, adversary: features combined, and every way of stopping.

Per-key limits with priorities, a rate, shedding, time limits, resizes,
scaling, groups, `Pool.map` and `as_completed`; `Pool.shutdown` with a
grace period, a cancellation from outside and a Ctrl-C while jobs are set
aside for their key, submitters wait on a saturated key and the pacer waits
for a token; `submit_nowait` and `wait_for_room` with keys; `Job.cancel` of
a job set aside. After each step the invariant check runs and the
statistics are read (``queued`` never above the capacity), and every job
handle resolves once the pool has exited, whichever way it exits.

Bugs found here (each test says what failed before its fix):

* a resize that lowered the minimum woke every idle worker to park again
  with an idle timer, so until they ran the pool had no idle worker: a
  pool of 4 idle workers with ``capacity=0`` refused ``submit_nowait``;
* a blocked submitter whose key may run, behind one waiting for a place
  aside, stayed blocked while its job fitted in the queue (a worker being
  started makes room there, never aside), and a later ``submit_nowait``
  took that room: it lost its turn;
* a job of a key ending in a scaling pool started a worker for the key's
  next job, which the worker that freed the key took itself;
* a resize up, and the pacer, started a worker for a blocked submitter
  whose key was saturated: it idled;
* shedding counted a blocked submitter of a saturated key as a job ahead
  (a job for an idle worker was shed), and not behind its own key;
* the overload message counted the queue without the jobs set aside.
"""

# pyright: reportPossiblyUnboundVariable=false

from __future__ import annotations

import contextlib
import inspect
import sys
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

import trio_pool
from trio_pool import _controls, _core, _rate

from .helpers import assert_balanced, assert_no_bookkeeping, books
from .test_worker_interrupts import Interrupter, interrupt_each_hit

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import CodeType

DONE = {
    trio_pool.JobState.SUCCEEDED,
    trio_pool.JobState.FAILED,
    trio_pool.JobState.TIMED_OUT,
    trio_pool.JobState.CANCELLED,
}


def checked(pool: trio_pool.Pool) -> trio_pool.PoolStatistics:
    """The invariants hold and the statistics balance, with ``queued``
    within the capacity (the pool was not resized below its jobs)."""
    assert_balanced(pool)
    stats = pool.statistics()
    if not books(pool).over_capacity_allowed:
        assert stats.queued <= stats.capacity, stats
    return stats


async def settle(pool: trio_pool.Pool) -> trio_pool.PoolStatistics:
    """Let every task run until all are blocked; then `checked`."""
    await trio.testing.wait_all_tasks_blocked()
    return checked(pool)


async def record(started: list[tuple[str, float]], tag: str, seconds: float) -> str:
    """A job: note its start, sleep, return its tag."""
    started.append((tag, trio.current_time()))
    await trio.sleep(seconds)
    return tag


async def submit_a_second(pool: trio_pool.Pool, key: str) -> None:
    """A task: submit a job of 1 s with ``key``."""
    await pool.submit(trio.sleep, 1, key=key)


async def fail_after(seconds: float) -> None:
    await trio.sleep(seconds)
    raise ValueError("the job failed")


# ------------------------------------------------------------ bugs found


async def test_a_resize_that_lowers_the_minimum_keeps_idle_workers_ready(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Before the fix: all 4 woken, none idle; the first submit_nowait
    raised PoolOverloaded ("all 4 workers busy") from a pool of idle ones."""
    async with trio_pool.open_pool(4, capacity=0, idle_timeout=10) as pool:
        pool.resize(2, max_workers=4)
        stats = checked(pool)
        assert (stats.workers, stats.idle_workers) == (4, 2)  # 2 may retire
        jobs = [pool.submit_nowait(trio.sleep, 1) for _ in range(2)]
        stats = checked(pool)
        assert (stats.running, stats.idle_workers) == (2, 0)
        with pytest.raises(trio_pool.PoolOverloaded):  # the woken two are away
            pool.submit_nowait(trio.sleep, 1)
        stats = await settle(pool)  # they parked again, with a timer
        assert (stats.workers, stats.idle_workers, stats.running) == (4, 2, 2)
        await pool.join()
        await trio.sleep(11)  # every worker above the minimum retired
        stats = await settle(pool)
        assert (stats.workers, stats.idle_workers) == (2, 2)
        jobs += [pool.submit_nowait(trio.sleep, 1) for _ in range(2)]
    assert all(job.state is trio_pool.JobState.SUCCEEDED for job in jobs)
    assert_no_bookkeeping(pool)


async def test_a_submitter_behind_one_waiting_for_its_key_keeps_its_turn(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Before the fix: after the resize the submitter without a key stayed
    blocked while its job fitted (the first one, of a saturated key, needs
    a place aside), and the later submit_nowait took its room."""
    admitted: list[str] = []
    async with trio_pool.open_pool(1, capacity=1, per_key_limit=1) as pool:
        first = pool.submit_nowait(trio.sleep, 10, key="k")  # runs
        aside = pool.submit_nowait(trio.sleep, 10, key="k")  # fills the queue

        async def submit(tag: str, key: str | None) -> None:
            await pool.submit(trio.sleep, 1, key=key)
            admitted.append(tag)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit, "k", "k")  # waits for a place aside
            await settle(pool)
            nursery.start_soon(submit, "no key", None)  # waits for the queue
            stats = await settle(pool)
            assert (stats.waiting_submitters, stats.queued) == (2, 1)
            pool.resize(1, max_workers=2)  # the worker it starts is room...
            stats = checked(pool)  # ...in the queue, not aside
            assert (stats.waiting_submitters, stats.queued) == (1, 1), stats
            with pytest.raises(trio_pool.PoolOverloaded):  # its turn was taken
                pool.submit_nowait(trio.sleep, 1)
            await settle(pool)
            assert admitted == ["no key"]
        assert admitted == ["no key", "k"]
        assert trio.current_time() == 10  # admitted aside as the first k ended
    assert first.done
    assert aside.done
    assert_no_bookkeeping(pool)


async def test_the_overload_message_counts_the_jobs_set_aside(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Before the fix it said "0 of capacity=2 queued" of a full queue."""
    async with trio_pool.open_pool(1, capacity=2, per_key_limit=1) as pool:
        for _ in range(3):
            pool.submit_nowait(trio.sleep, 1, key="k")  # one runs, two aside
        assert checked(pool).queued == 2
        with pytest.raises(trio_pool.PoolOverloaded, match="2 of capacity=2 queued"):
            pool.submit_nowait(trio.sleep, 1)


async def test_a_resize_starts_no_worker_for_a_submitter_of_a_saturated_key(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Before the fix the resize counted every blocked submitter as a job
    waiting for a worker, and started one that idled (as `offer` starts
    none for a job whose key is saturated)."""
    async with trio_pool.open_pool(
        1, capacity=0, per_key_limit=1, idle_timeout=5, timings=True
    ) as pool:
        first = pool.submit_nowait(trio.sleep, 10, key="k")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit_a_second, pool, "k")
            stats = await settle(pool)
            assert (stats.waiting_submitters, stats.workers) == (1, 1)
            pool.resize(1, max_workers=3)
            stats = await settle(pool)
            assert (stats.waiting_submitters, stats.workers) == (1, 1), stats
        # Admitted as the key freed, at 10 s, as `offer` would accept a new
        # job at that instant (the one admission rule): no worker idle, the
        # pool may grow, so a worker is started for it; the worker whose job
        # freed the key takes it first, and the new one idles until it
        # retires (after ``idle_timeout``).
        stats = await settle(pool)
        assert (stats.running, stats.workers, stats.idle_workers) == (1, 2, 1), stats
    assert trio.current_time() == 11
    assert first.finished_at == 10
    assert_no_bookkeeping(pool)


async def test_the_pacer_starts_no_worker_for_a_submitter_of_a_saturated_key(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Before the fix the pacer, woken (here for a task waiting for room),
    started a worker for the blocked submitter once a token was there,
    though its key was saturated: the worker idled."""
    async with trio_pool.open_pool(
        1, max_workers=3, capacity=0, per_key_limit=1, rate=1, idle_timeout=5
    ) as pool:
        pool.submit_nowait(trio.sleep, 10, key="k")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit_a_second, pool, "k")
            await settle(pool)
            nursery.start_soon(pool.wait_for_room)
            for _ in range(4):
                await trio.sleep(1)
                stats = await settle(pool)
                assert (stats.workers, stats.waiting_submitters) == (1, 1), stats
            nursery.cancel_scope.cancel()
    assert_no_bookkeeping(pool)


async def test_a_submitter_of_a_saturated_key_is_not_ahead_in_the_shed_estimate(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Before the fix a job for the idle worker, 1 s long under a deadline
    1.5 s away, was shed ("it would finish at about 2s"): the estimate
    counted the blocked submitter of a saturated key as a job before it;
    and one of that key, which waits behind it, was not."""
    async with trio_pool.open_pool(2, capacity=0, per_key_limit=1, shed=True) as pool:
        await pool.run(trio.sleep, 1)  # the pool learns: 1 s a job
        pool.submit_nowait(trio.sleep, 1, key="k")  # 1..2 s
        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit_a_second, pool, "k")  # 2..3 s
            stats = await settle(pool)
            assert (stats.idle_workers, stats.waiting_submitters) == (1, 1)
            with trio.move_on_after(2.5):  # k's next turn: 3..4 s, too late
                with pytest.raises(trio_pool.PoolOverloaded, match="would finish"):
                    await pool.run(trio.sleep, 1, key="k")
            with trio.fail_after(1.5):  # the idle worker's: 1..2 s
                await pool.run(trio.sleep, 1)
            assert trio.current_time() == 2
        assert checked(pool).shed == 1
    assert_no_bookkeeping(pool)


# ------------------------------------------------ features that combine


async def test_jobs_set_aside_go_by_priority_and_cancel_at_each_step(
    autojump_clock: trio.abc.Clock,
) -> None:
    started: list[tuple[str, float]] = []
    async with trio_pool.open_pool(2, capacity=4, per_key_limit=1) as pool:
        jobs = {
            tag: pool.submit_nowait(record, started, tag, 1, key="k", priority=level)
            for tag, level in [("a", 0), ("b", 0), ("c", 5), ("d", -1), ("e", 5)]
        }
        stats = checked(pool)
        assert (stats.running, stats.queued, stats.waiting_for_key) == (1, 4, 4)
        jobs["c"].cancel()  # set aside: it leaves at once, its room with it
        stats = checked(pool)
        assert (stats.queued, stats.waiting_for_key, stats.cancelled) == (3, 3, 1)
        jobs["f"] = pool.submit_nowait(record, started, "f", 1, key="k", priority=9)
        with pytest.raises(trio_pool.PoolOverloaded):  # 4 aside: the capacity
            pool.submit_nowait(record, started, "g", 1, key="k", priority=99)
        # without a key, it goes to the idle worker whatever waits aside
        jobs["x"] = pool.submit_nowait(record, started, "x", 1)
        stats = checked(pool)
        assert (stats.running, stats.queued, stats.idle_workers) == (2, 4, 0)
        for _ in range(5):
            await trio.sleep(1)
            checked(pool)
    assert sorted(started, key=lambda pair: (pair[1], pair[0])) == [
        ("a", 0),
        ("x", 0),
        ("f", 1),
        ("e", 2),
        ("b", 3),
        ("d", 4),
    ]
    assert jobs["c"].state is trio_pool.JobState.CANCELLED
    assert_no_bookkeeping(pool)


async def test_a_key_frees_its_place_when_its_job_times_out(
    autojump_clock: trio.abc.Clock,
) -> None:
    started: list[tuple[str, float]] = []
    async with trio_pool.open_pool(2, per_key_limit=1, job_timeout=2) as pool:
        slow = pool.submit_nowait(record, started, "slow", 10, key="k")
        quick = pool.submit_nowait(record, started, "quick", 1, key="k")
        free = pool.submit_nowait(record, started, "free", 10, key="k", timeout=None)
        assert checked(pool).waiting_for_key == 2
        await trio.sleep(2.5)
        stats = checked(pool)
        assert (stats.timed_out, stats.running, stats.waiting_for_key) == (1, 1, 1)
    assert started == [("slow", 0), ("quick", 2), ("free", 3)]
    assert slow.state is trio_pool.JobState.TIMED_OUT
    assert quick.state is free.state is trio_pool.JobState.SUCCEEDED
    assert_no_bookkeeping(pool)


async def test_shutdown_with_grace_while_the_pacer_waits_and_jobs_are_aside(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Rate 1 start per 4 s: a (0 s), b (4 s) start within the grace; c
    would start at 8 s, and the second a, aside then queued behind c."""
    async with trio_pool.open_pool(
        2, capacity=6, per_key_limit=1, rate=0.25, timings=True
    ) as pool:
        jobs = [pool.submit_nowait(trio.sleep, 1, key=key) for key in "aabbc"]
        stats = checked(pool)
        assert (stats.running, stats.queued, stats.waiting_for_key) == (1, 4, 2)
        await pool.shutdown(grace_period=6)
        assert trio.current_time() == 6  # not the next token's 8 s
        assert all(job.done for job in jobs)
        stats = checked(pool)
        assert (stats.succeeded, stats.cancelled, stats.queued) == (2, 3, 0)
    assert [job.started_at for job in jobs] == [0, None, 4, None, None]
    assert_no_bookkeeping(pool)


async def test_outside_cancel_with_jobs_aside_a_blocked_key_and_the_pacer_waiting(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A shielded shutdown in the body's finally returns at once, every
    handle resolved, though jobs wait aside, for a token and for room."""
    jobs: list[trio_pool.Job[Any]] = []
    ended: list[str] = []

    async def blocked_submit() -> None:
        try:
            jobs.append(await pool.submit(trio.sleep, 1, key="k"))
        finally:
            ended.append("submit")

    async def watch() -> None:
        try:
            await pool.wait_for_room()
        finally:
            ended.append("watch")

    with trio.CancelScope() as outside:
        async with trio_pool.open_pool(
            2, capacity=3, per_key_limit=1, rate=0.5
        ) as pool:
            try:
                async with trio.open_nursery() as nursery:
                    jobs.append(pool.submit_nowait(trio.sleep, 10, key="k"))  # runs
                    jobs.append(pool.submit_nowait(trio.sleep, 1, key="k"))  # aside
                    jobs.append(pool.submit_nowait(trio.sleep, 1, priority=1))
                    jobs.append(pool.submit_nowait(trio.sleep, 1))  # both: a token
                    nursery.start_soon(blocked_submit)
                    nursery.start_soon(watch)
                    stats = await settle(pool)
                    assert (stats.running, stats.queued) == (1, 3)
                    assert (stats.waiting_submitters, stats.idle_workers) == (1, 1)
                    await trio.sleep(1)  # the next token is 2 s away
                    outside.cancel()
                    await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    before = trio.current_time()
                    with trio.fail_after(60):  # (not forever, if it hangs)
                        await pool.shutdown()
                    assert trio.current_time() == before
                    assert all(job.done for job in jobs)
                    checked(pool)
    assert sorted(ended) == ["submit", "watch"]
    assert [job.state for job in jobs] == [trio_pool.JobState.CANCELLED] * 4
    assert_no_bookkeeping(pool)


async def test_a_failing_group_cancels_its_keyed_jobs_aside_not_the_others(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(3, per_key_limit=1) as pool:
        other = pool.submit_nowait(trio.sleep, 5, key="b")  # someone else's
        later = pool.submit_nowait(trio.sleep, 5, key="b")  # aside, after...
        with pytest.RaisesGroup(ValueError):
            async with pool.group() as group:
                running = group.submit_nowait(trio.sleep, 5, key="a")
                aside = group.submit_nowait(trio.sleep, 5, key="a")
                behind = group.submit_nowait(trio.sleep, 5, key="b")  # ...this
                failing = group.submit_nowait(fail_after, 1)
                stats = await settle(pool)
                assert (stats.running, stats.waiting_for_key) == (3, 3)
        assert trio.current_time() == 1
        stats = checked(pool)
        assert (stats.running, stats.waiting_for_key, stats.active_keys) == (1, 1, 1)
        assert failing.state is trio_pool.JobState.FAILED
        for job in (running, aside, behind):
            assert job.state is trio_pool.JobState.CANCELLED
        await pool.join()
        assert trio.current_time() == 10  # the other caller's, one after the other
    assert other.state is later.state is trio_pool.JobState.SUCCEEDED
    assert_no_bookkeeping(pool)


async def test_a_keyed_map_unordered_beside_as_completed(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def work(item: int) -> int:
        await trio.sleep(item % 3 + 1)
        return item

    def key(item: int) -> str:
        return "odd" if item % 2 else "even"

    async with trio_pool.open_pool(4, capacity=2, per_key_limit=1) as pool:
        outsider = pool.submit_nowait(trio.sleep, 3, key="odd")  # holds "odd"
        results: list[tuple[int, float]] = []
        async with pool.map(work, range(8), key=key, ordered=False) as items:
            async for item in items:
                results.append((item, trio.current_time()))
                checked(pool)
        async with trio_pool.as_completed([outsider]) as finished:
            assert [job async for job in finished] == [outsider]
    # even: 0 (0..1), 2 (1..4), 4 (4..6), 6 (6..7); odd after the outsider's
    # 3 s: 1 (3..5), 3 (5..6), 5 (6..9), 7 (9..11)
    assert sorted(results, key=lambda pair: (pair[1], pair[0])) == [
        (0, 1),
        (2, 4),
        (1, 5),
        (3, 6),
        (4, 6),
        (6, 7),
        (5, 9),
        (7, 11),
    ]
    assert_no_bookkeeping(pool)


async def test_no_room_while_the_queue_is_full_of_jobs_set_aside(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=1, per_key_limit=1) as pool:
        pool.submit_nowait(trio.sleep, 5, key="k")  # runs
        aside = pool.submit_nowait(trio.sleep, 5, key="k")
        assert checked(pool).queued == 1
        with trio.move_on_after(1):
            await pool.wait_for_room()
            pytest.fail("room while the queue is full of a job set aside")
        for key in (None, "k", "other"):
            with pytest.raises(trio_pool.PoolOverloaded):
                pool.submit_nowait(trio.sleep, 1, key=key)
        aside.cancel()  # its room is free at once
        assert checked(pool).queued == 0
        before = trio.current_time()
        await pool.wait_for_room()
        assert trio.current_time() == before
        pool.submit_nowait(trio.sleep, 1, key="other")
        with pytest.raises(trio_pool.PoolOverloaded):
            pool.submit_nowait(trio.sleep, 1, key="k")
        checked(pool)
    assert_no_bookkeeping(pool)


async def test_cancelling_a_job_set_aside_admits_a_blocked_submitter(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(1, capacity=1, per_key_limit=1) as pool:
        pool.submit_nowait(trio.sleep, 5, key="k")
        aside = pool.submit_nowait(trio.sleep, 5, key="k")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.submit, trio.sleep, 1)
            stats = await settle(pool)
            assert (stats.waiting_submitters, stats.queued) == (1, 1)
            aside.cancel()
            stats = checked(pool)  # in the same step: admitted
            assert (stats.waiting_submitters, stats.queued) == (0, 1)
        assert trio.current_time() == 0
    assert trio.current_time() == 6
    assert_no_bookkeeping(pool)


async def test_a_resize_sends_a_handed_keyed_job_back_holding_its_key_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(2, per_key_limit=1, timings=True) as pool:
        long = pool.submit_nowait(trio.sleep, 3)
        await settle(pool)
        handed = pool.submit_nowait(trio.sleep, 1, key="k")  # to the idle one
        other = pool.submit_nowait(trio.sleep, 1)  # queued: one is being woken
        aside = pool.submit_nowait(trio.sleep, 1, key="k")
        pool.resize(1)  # the woken worker gives its job back, first, and stops
        checked(pool)
        stats = await settle(pool)
        assert (stats.workers, stats.running, stats.queued) == (1, 1, 3)
        assert books(pool).key_active == {"k": 1}
        await pool.join()
    starts = [job.started_at for job in (long, handed, other, aside)]
    assert starts == [0, 3, 4, 5]
    assert_no_bookkeeping(pool)


async def test_a_scaling_pool_grows_for_queued_jobs_not_for_jobs_aside(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Before the fix, a job of a key ending started a worker for the key's
    next one (no worker was idle), which the worker freeing the key then
    took itself: 3 workers for 2 jobs at a time, the third idle."""
    async with trio_pool.open_pool(
        1, max_workers=4, per_key_limit=1, idle_timeout=1, timings=True
    ) as pool:
        jobs = [pool.submit_nowait(trio.sleep, 2, key="k") for _ in range(3)]
        jobs.append(pool.submit_nowait(trio.sleep, 10))
        stats = await settle(pool)
        assert (stats.workers, stats.running, stats.waiting_for_key) == (2, 2, 2)
        most = 0
        while not all(job.done for job in jobs):
            await trio.sleep(0.5)
            stats = await settle(pool)
            most = max(most, stats.workers)
        assert most == 2
        await trio.sleep(2)
        assert (await settle(pool)).workers == 1
    assert [job.started_at for job in jobs] == [0, 2, 4, 0]
    assert_no_bookkeeping(pool)


# --------------------------------------------- every way out, every handle


EXITS = ["body ends", "close", "shutdown", "grace", "outside", "raise"]


@pytest.mark.parametrize("how", EXITS)
async def test_every_handle_resolves_whichever_way_a_pool_of_every_feature_exits(
    autojump_clock: trio.abc.Clock, how: str
) -> None:
    """Jobs running, handed over, queued for a token, aside for their key,
    of a group and of a map, submitters blocked on a saturated key and on a
    full queue (tasks outside the pool's block); then the pool exits."""
    jobs: list[trio_pool.Job[Any]] = []
    refusals: list[BaseException] = []

    async def submit(pool: trio_pool.Pool, key: str | None) -> None:
        try:
            jobs.append(await pool.submit(trio.sleep, 1, key=key, priority=2))
        except trio_pool.PoolClosed as exc:
            refusals.append(exc)

    async def map_of(pool: trio_pool.Pool) -> None:
        try:
            async with pool.map(
                trio.sleep, [2, 2, 2], key=lambda _: "m", outcomes=True
            ) as results:
                async for _ in results:
                    pass
        except trio_pool.PoolClosed as exc:
            refusals.append(exc)

    async def group_of(pool: trio_pool.Pool) -> None:
        try:
            async with pool.group() as group:
                jobs.append(await group.submit(trio.sleep, 3, key="g"))
                jobs.append(await group.submit(trio.sleep, 3, key="g"))
        except trio_pool.PoolClosed as exc:
            refusals.append(exc)

    async with trio.open_nursery() as outer:
        with trio.CancelScope() as outside:
            try:
                async with trio_pool.open_pool(
                    2,
                    max_workers=3,
                    capacity=4,
                    per_key_limit=1,
                    rate=2,
                    burst=2,
                    shed=True,
                    job_timeout=10,
                    idle_timeout=1,
                ) as pool:
                    jobs.extend(
                        pool.submit_nowait(trio.sleep, 4, key=key, priority=level)
                        for key, level in [("a", 0), ("a", 5), ("b", -1), (None, 0)]
                    )
                    outer.start_soon(group_of, pool)
                    outer.start_soon(map_of, pool)
                    await settle(pool)
                    outer.start_soon(submit, pool, "a")
                    outer.start_soon(submit, pool, None)
                    stats = await settle(pool)
                    assert stats.waiting_submitters >= 2, stats
                    assert stats.waiting_for_key, stats
                    await trio.sleep(0.5)
                    checked(pool)
                    if how == "close":
                        pool.close()
                    elif how == "shutdown":
                        await pool.shutdown()
                    elif how == "grace":
                        await pool.shutdown(grace_period=2)
                        assert trio.current_time() == 2.5  # the rest cancelled
                        assert all(job.done for job in jobs)
                        assert books(pool).key_waiting == {}
                    elif how == "outside":
                        outside.cancel()
                        await trio.sleep_forever()
                    elif how == "raise":
                        raise KeyError(how)
            except KeyError:
                assert how == "raise"
        assert all(job.done for job in jobs), [job for job in jobs if not job.done]
        checked(pool)
    assert all(job.done for job in jobs), [job for job in jobs if not job.done]
    if how in ("body ends", "close", "shutdown"):
        assert {job.state for job in jobs} == {trio_pool.JobState.SUCCEEDED}
    assert {job.state for job in jobs} <= DONE
    assert all(isinstance(exc, trio_pool.PoolClosed) for exc in refusals)
    assert_no_bookkeeping(pool)


# ------------------------------------------------------------ Ctrl-C


def lines_of(code: CodeType) -> list[int]:
    """Every line of ``code`` that executes (not its ``def``)."""
    return sorted(
        {
            line
            for _, _, line in code.co_lines()
            if line is not None and line != code.co_firstlineno
        }
    )


def source_line(code: CodeType, line: int) -> str:
    source, first = inspect.getsourcelines(code)
    return source[line - first].strip()[:40]


async def a_keyed_paced_pool(
    pools: list[trio_pool.Pool],
    jobs: list[trio_pool.Job[Any]],
    then: Callable[[trio_pool.Pool], Awaitable[None]],
) -> None:
    """Jobs running, aside for their key and queued for a token, a
    submitter blocked on a saturated key and a task waiting for room; then
    ``then(pool)``, and the pool's block ends."""
    async with trio_pool.open_pool(2, capacity=3, per_key_limit=1, rate=1) as pool:
        pools.append(pool)

        async def blocked_submit() -> None:
            # (it gives up, or the pool closes: its job is never accepted)
            with trio.move_on_after(1.5), contextlib.suppress(trio_pool.PoolClosed):
                jobs.append(await pool.submit(trio.sleep, 1, key="a"))

        async def watch() -> None:
            with contextlib.suppress(trio_pool.PoolClosed):
                await pool.wait_for_room()

        async with trio.open_nursery() as nursery:
            jobs.extend(pool.submit_nowait(trio.sleep, 1, key=key) for key in "aabc")
            nursery.start_soon(blocked_submit)
            nursery.start_soon(watch)
            await trio.testing.wait_all_tasks_blocked()
            await then(pool)


def run_interrupted(
    interrupter: Interrupter,
    scenario: Callable[
        [list[trio_pool.Pool], list[trio_pool.Job[Any]]], Awaitable[None]
    ],
) -> None:
    """Run ``scenario`` with ``interrupter`` armed: the run ends with the
    KeyboardInterrupt (or normally, if it never fired), every handle is
    resolved and every book closes."""
    pools: list[trio_pool.Pool] = []
    jobs: list[trio_pool.Job[Any]] = []
    ended: BaseException | None = None
    try:
        with interrupter.armed():
            clock = trio.testing.MockClock(autojump_threshold=0)
            trio.run(scenario, pools, jobs, clock=clock)
    except (KeyboardInterrupt, BaseExceptionGroup) as exc:
        ended = exc  # (a group: the test's own nursery wraps it)
    assert interrupter.fired == (ended is not None), ended
    if isinstance(ended, BaseExceptionGroup):
        group: BaseExceptionGroup[BaseException] = ended  # pyright: ignore[reportUnknownVariableType]
        assert group.split(KeyboardInterrupt)[1] is None, group
    assert all(job.done for job in jobs), [job for job in jobs if not job.done]
    for pool in pools:
        assert_no_bookkeeping(pool)


PACER_CODE = _rate.run_pacer.__code__
PACER_LINES = lines_of(PACER_CODE)


@pytest.mark.parametrize(
    "line",
    PACER_LINES,
    ids=[f"{line}:{source_line(PACER_CODE, line)}" for line in PACER_LINES],
)
def test_ctrl_c_at_each_line_of_the_pacer_with_jobs_aside(
    monkeypatch: pytest.MonkeyPatch, line: int
) -> None:
    monkeypatch.setattr(_core, "YIELD_EVERY", 2)

    async def scenario(
        pools: list[trio_pool.Pool], jobs: list[trio_pool.Job[Any]]
    ) -> None:
        await a_keyed_paced_pool(pools, jobs, trio_pool.Pool.join)

    interrupt_each_hit(
        PACER_CODE, line, 5, lambda hook: run_interrupted(hook, scenario)
    )


SHUTDOWN_CODE = _controls.PoolControls.shutdown.__code__
SHUTDOWN_LINES = [
    line
    for line in lines_of(SHUTDOWN_CODE)
    if not source_line(SHUTDOWN_CODE, line).startswith("with ")
]
"""(Not the ``with`` line: its second line event, as the block exits, comes
before ``__exit__`` is called, and an exception raised there skips it, so
the hook would leave the cancel scope open, where no real signal lands:
Python looks for signals at calls, and the scope's ``__exit__`` is
KI-protected.)"""


@pytest.mark.parametrize(
    "line",
    SHUTDOWN_LINES,
    ids=[f"{line}:{source_line(SHUTDOWN_CODE, line)}" for line in SHUTDOWN_LINES],
)
def test_ctrl_c_at_each_line_of_a_shutdown_with_grace_while_jobs_wait(
    monkeypatch: pytest.MonkeyPatch, line: int
) -> None:
    """The first shutdown drains within its grace, the second cancels."""
    monkeypatch.setattr(_core, "YIELD_EVERY", 2)

    async def scenario(
        pools: list[trio_pool.Pool], jobs: list[trio_pool.Job[Any]]
    ) -> None:
        for grace in (10, 0.5):

            async def shut_down(pool: trio_pool.Pool, grace: float = grace) -> None:
                deadline = trio.current_time() + grace
                await pool.shutdown(grace_period=grace)
                assert trio.current_time() <= deadline  # nothing ran after it

            await a_keyed_paced_pool(pools, jobs, shut_down)

    interrupt_each_hit(
        SHUTDOWN_CODE, line, 2, lambda hook: run_interrupted(hook, scenario)
    )
