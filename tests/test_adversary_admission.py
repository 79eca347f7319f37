"""Issue 17, adversary: the one admission decision (`Admission._decide`).

Blocked submitters of mixed keys and none are served first come, first
served as room appears in each way (a job ends, a key frees, a cancel of a
queued, set-aside or handed job, a resize); `submit_nowait` never takes room
from a blocked submitter whose key may run, and goes by one whose key is
saturated; `wait_for_room` returns exactly when `submit_nowait` would
succeed (keys, a rate, both); a second idle worker is woken with the first
job in line; a pool going down (an error escaping a job, Ctrl-C, an outside
cancellation) refuses or accepts each blocked submitter, none hangs, and it
starts no worker after. The invariant check runs after each step, and
``queued`` never exceeds the capacity.

Each test says what it guards and which change to the code makes it fail.

Bugs found here (each test says what failed before its fix):

* in a pool with keys and a rate, a new job (or a watcher's
  `wait_for_room`) counted as behind nobody when the first blocked
  submitter's key was saturated, though one behind it, whose key may run,
  waited for the next start token beside an idle worker: a task that ran
  as the token came, before the pacer, took the token and the worker
  (`KeyedCore._blocked_ahead` now asks whether any blocked submitter's key
  may run);
* in a pool with a rate that may grow, nothing woke the pacer as a
  submitter blocked: with start tokens there, the pool did not grow for it
  (`PacedCore._offer_decided` wakes the pacer when it refuses a job while
  the pool may grow);
* and once the pacer had started a worker for the line, it slept until
  woken: the worker took its token and a submitter's job and woke nobody,
  so the rest of the line waited for a job to end (`PacedCore.start_next`
  wakes the pacer while submitters wait and the pool may grow).
"""

# pyright: reportPossiblyUnboundVariable=false

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

import trio_pool

from .helpers import assert_balanced, assert_no_bookkeeping

if TYPE_CHECKING:
    from collections.abc import Hashable


def checked(pool: trio_pool.Pool) -> trio_pool.PoolStatistics:
    """The invariants hold, the statistics balance, ``queued`` is within the
    capacity (no resize below the jobs here)."""
    assert_balanced(pool)
    stats = pool.statistics()
    assert stats.queued <= stats.capacity, stats
    return stats


async def settle(pool: trio_pool.Pool) -> trio_pool.PoolStatistics:
    """Let every task run until all are blocked; then `checked`."""
    await trio.testing.wait_all_tasks_blocked()
    return checked(pool)


class Line:
    """Blocked submitters, each tagged, and the order they got in."""

    def __init__(self, pool: trio_pool.Pool, nursery: trio.Nursery) -> None:
        self.pool = pool
        self.nursery = nursery
        self.admitted: list[str] = []
        self.refused: list[str] = []
        self.jobs: dict[str, trio_pool.Job[Any]] = {}

    async def join(self, tag: str, key: Hashable = None, seconds: float = 1) -> None:
        """Start a submitter and let it block (it must not get in now)."""
        self.nursery.start_soon(self.submit, tag, key, seconds)
        await trio.testing.wait_all_tasks_blocked()
        assert tag not in self.admitted, f"{tag} got in at once"

    async def submit(self, tag: str, key: Hashable, seconds: float) -> None:
        try:
            job = await self.pool.submit(trio.sleep, seconds, key=key, name=tag)
        except trio_pool.PoolClosed:
            self.refused.append(tag)
        else:
            self.jobs[tag] = job
            self.admitted.append(tag)


def refused_now(pool: trio_pool.Pool, key: Hashable = None) -> bool:
    """Whether `submit_nowait` refuses a job now (PoolOverloaded); if it is
    accepted, it is cancelled at once (it took the room a test probes)."""
    try:
        job = pool.submit_nowait(trio.sleep, 1, key=key)
    except trio_pool.PoolOverloaded:
        return True
    job.cancel()
    return False


# ------------------------------------------------ first come, first served


async def test_mixed_keys_get_in_in_turn_as_room_appears_each_way(
    autojump_clock: trio.abc.Clock,
) -> None:
    """One worker, one place; submitters of a saturated key, of no key and
    of a free key, blocked in that order. A cancel of a job set aside lets
    the first (of its key) in aside; the running job's cancel frees the key
    (its job aside moves to the queue, the worker takes it) and lets the
    second in; the queued job's cancel lets the third in. A probe
    `submit_nowait` in between is refused while one whose key may run waits.

    Fails if `Intake.cancel` of a job set aside admits no blocked submitter,
    or if `_decide` sets no job of a saturated key aside (``REFUSE`` for
    ``ASIDE``: "none" gets the place before "a")."""
    async with trio_pool.open_pool(1, capacity=1, per_key_limit=1) as pool:
        running = pool.submit_nowait(trio.sleep, 10, key="a")
        aside = pool.submit_nowait(trio.sleep, 10, key="a")
        async with trio.open_nursery() as nursery:
            line = Line(pool, nursery)
            await line.join("a", key="a")  # needs a place aside
            await line.join("none")  # needs the queue's place
            await line.join("b", key="b")  # its key is free: needs a place too
            await line.join("later")
            stats = checked(pool)
            assert (stats.waiting_submitters, stats.queued) == (4, 1)
            assert refused_now(pool)
            aside.cancel()  # a place aside: "a" (its key still saturated)
            stats = await settle(pool)
            assert line.admitted == ["a"]
            assert (stats.waiting_submitters, stats.queued) == (3, 1)
            assert refused_now(pool)
            running.cancel()  # key a frees: "a" queued, then started
            stats = await settle(pool)
            assert line.admitted == ["a", "none"], line.admitted
            assert stats.waiting_submitters == 2
            assert refused_now(pool)
            line.jobs["none"].cancel()  # the queued place: "b"
            stats = await settle(pool)
            assert line.admitted == ["a", "none", "b"]
            assert refused_now(pool, key="c")
        assert line.admitted == ["a", "none", "b", "later"]
    assert [line.jobs[tag].state for tag in ("a", "b", "later")] == [
        trio_pool.JobState.SUCCEEDED
    ] * 3
    assert_no_bookkeeping(pool)


async def test_a_resize_up_and_a_job_ending_serve_the_line_in_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    """``capacity=0``: each new worker is room for one submitter, in turn;
    `submit_nowait` is refused while any waits (the resize's worker is the
    first's, not the probe's); a job ending hands its worker to the next.

    Fails if the blocked submitters are admitted newest first
    (`RoomWaiters.admit_first`), or if a worker that finds the queue empty
    takes no blocked submitter's job (`Admission._take_waiter`)."""
    async with trio_pool.open_pool(1, capacity=0, idle_timeout=None) as pool:
        first = pool.submit_nowait(trio.sleep, 5)
        async with trio.open_nursery() as nursery:
            line = Line(pool, nursery)
            for tag in ("s1", "s2", "s3"):
                await line.join(tag, seconds=3)
            assert checked(pool).waiting_submitters == 3
            pool.resize(1, max_workers=2)  # one worker: room for s1 only
            stats = checked(pool)
            assert (stats.workers, stats.waiting_submitters) == (2, 2), stats
            assert refused_now(pool)
            await settle(pool)
            assert line.admitted == ["s1"]
            assert refused_now(pool)
            await trio.sleep(3)  # s1's job ends: its worker takes s2
            stats = await settle(pool)
            assert line.admitted == ["s1", "s2"]
            assert (stats.running, stats.waiting_submitters) == (2, 1)
            assert refused_now(pool)
            await trio.sleep(2)  # the first job ends: its worker takes s3
            stats = await settle(pool)
            assert line.admitted == ["s1", "s2", "s3"]
        assert trio.current_time() == 5
    assert first.state is trio_pool.JobState.SUCCEEDED
    assert_no_bookkeeping(pool)


async def test_a_resize_down_serves_the_line_only_as_the_remaining_worker_frees(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Two busy workers, the queue's one place taken, two submitters
    blocked; ``resize(1)``: the worker whose job ends first retires without
    taking the queued job (it is above the new maximum), so the line waits
    for the other; as it frees, the queued job starts and the first
    submitter takes its place, then the second, in turn.

    Fails if a worker above ``max_workers`` takes a queued job
    (`PoolCore.start_next`'s check: the queued job would start at 2 s)."""
    async with trio_pool.open_pool(2, capacity=1) as pool:
        pool.submit_nowait(trio.sleep, 10)
        pool.submit_nowait(trio.sleep, 2)
        queued = pool.submit_nowait(trio.sleep, 1)
        async with trio.open_nursery() as nursery:
            line = Line(pool, nursery)
            await line.join("s1")
            await line.join("s2")
            pool.resize(1)
            stats = checked(pool)
            assert (stats.workers, stats.queued, stats.waiting_submitters) == (2, 1, 2)
            await trio.sleep(2)  # the second job ends: its worker retires
            stats = await settle(pool)
            assert (stats.workers, stats.queued, stats.waiting_submitters) == (1, 1, 2)
            assert queued.state is trio_pool.JobState.QUEUED
            assert refused_now(pool)
            await trio.sleep(8)  # the first ends: the queued one starts, s1 in
            stats = await settle(pool)
            assert line.admitted == ["s1"]
            assert (stats.running, stats.queued, stats.waiting_submitters) == (1, 1, 1)
            assert refused_now(pool)
        assert line.admitted == ["s1", "s2"]
        assert trio.current_time() == 11
    assert queued.done
    assert_no_bookkeeping(pool)


async def test_a_cancelled_handed_job_frees_its_worker_for_the_line_not_a_probe(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A job handed to a worker that has not run yet is cancelled: the
    worker, once it runs, takes the first blocked submitter's job; a
    `submit_nowait` before it runs is refused (the place is the line's).

    Fails if the woken worker takes no blocked submitter's job
    (`Admission._take_waiter`)."""
    async with trio_pool.open_pool(2, capacity=0) as pool:
        busy = pool.submit_nowait(trio.sleep, 10)
        await settle(pool)
        handed = pool.submit_nowait(trio.sleep, 10)  # to the idle worker
        async with trio.open_nursery() as nursery:
            line = Line(pool, nursery)
            nursery.start_soon(line.submit, "s1", None, 1)
            nursery.start_soon(line.submit, "s2", None, 1)
            await trio.testing.wait_all_tasks_blocked()
            assert handed.state is trio_pool.JobState.RUNNING
            handed.cancel()
            await settle(pool)
            assert len(line.admitted) == 1
            assert checked(pool).waiting_submitters == 1
            assert refused_now(pool)
            await trio.sleep(1)
            await settle(pool)
            assert len(line.admitted) == 2
        busy.cancel()
    assert_no_bookkeeping(pool)


async def test_submit_nowait_goes_by_a_line_of_saturated_keys_only(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A line whose every submitter's key is saturated (no place aside) lets
    a job without a key, or of a free key, by: a worker is started for it
    (`GROW`). Behind a submitter whose key may run, the same job is refused.

    Fails if `KeyedCore._blocked_ahead` says True of a line of saturated
    keys (it would block every new job)."""
    async with trio_pool.open_pool(
        1, max_workers=3, capacity=1, per_key_limit=1, idle_timeout=None
    ) as pool:
        pool.submit_nowait(trio.sleep, 10, key="a")  # runs
        pool.submit_nowait(trio.sleep, 10, key="a")  # aside: the queue is full
        async with trio.open_nursery() as nursery:
            line = Line(pool, nursery)
            await line.join("a1", key="a")
            await line.join("a2", key="a")
            stats = checked(pool)
            assert (stats.workers, stats.waiting_submitters) == (1, 2)
            by = pool.submit_nowait(trio.sleep, 1)  # no key: a worker for it
            stats = checked(pool)
            assert (stats.workers, stats.waiting_submitters) == (2, 2), stats
            by_b = pool.submit_nowait(trio.sleep, 1, key="b")  # a free key
            stats = await settle(pool)
            assert (stats.workers, stats.running) == (3, 3), stats
            assert not line.admitted
            await trio.sleep(1)  # both ended: two idle workers, still no room
            stats = await settle(pool)
            assert (stats.idle_workers, stats.waiting_submitters) == (2, 2)
            assert not refused_now(pool)  # an idle worker takes it
        assert line.admitted == ["a1", "a2"]
    assert by.state is by_b.state is trio_pool.JobState.SUCCEEDED
    assert_no_bookkeeping(pool)


async def test_a_token_goes_to_the_submitter_behind_a_saturated_key_not_a_probe(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A pool with keys and a rate: a submitter of a saturated key, then one
    without a key waiting for the next start token beside an idle worker. A
    task that wakes as the token comes and calls `submit_nowait` before the
    pacer runs must be refused: the token and the worker are the blocked
    submitter's (first come, first served), whichever task runs first.

    Before the fix `KeyedCore._blocked_ahead` looked only at the first
    blocked submitter: its key saturated, a new job counted as behind
    nobody, took the token and the idle worker, and the blocked submitter
    waited a second more (in about half of the rounds: Trio runs the tasks
    woken at one instant in either order; 16 rounds, each a fresh pool)."""
    for round_ in range(16):
        async with trio_pool.open_pool(
            2, capacity=0, rate=1, per_key_limit=1, idle_timeout=None
        ) as pool:
            begun = trio.current_time()
            long = pool.submit_nowait(trio.sleep, 100, key="a")  # the token
            async with trio.open_nursery() as nursery:
                line = Line(pool, nursery)
                await line.join("a", key="a")  # saturated, no place aside
                await line.join("none")  # waits for the next token
                stats = checked(pool)
                assert (stats.idle_workers, stats.waiting_submitters) == (1, 2)
                await trio.sleep_until(begun + 1)  # the token comes
                assert refused_now(pool), round_
                stats = await settle(pool)
                assert line.admitted == ["none"], (round_, line.admitted)
                assert stats.waiting_submitters == 1
                long.cancel()
            assert line.admitted == ["none", "a"]
    assert_no_bookkeeping(pool)


async def test_a_paced_pool_grows_for_a_submitter_that_blocks_with_a_token_there(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A hand-off pool with a rate that may grow, its worker busy, and start
    tokens there: `submit_nowait` is refused (a new worker is no room for a
    job that cannot wait: it may find no token), but a `submit` blocks and
    the pacer starts a worker for it at once, as it does for a queued job;
    a submitter of a saturated key gets none (its job could not run).

    Before the fix nothing woke the pacer as a submitter blocked (only an
    idle worker waiting for a token, or a `wait_for_room`, did): the pool
    did not grow, and the submitter waited for the busy worker's job to end
    (1.5 s later), unless an unrelated task happened to call
    `wait_for_room`."""
    async with trio_pool.open_pool(
        1, max_workers=3, capacity=0, rate=10, per_key_limit=1, idle_timeout=None
    ) as pool:
        pool.submit_nowait(trio.sleep, 2, key="a")
        await trio.sleep(0.5)  # a token again
        stats = await settle(pool)
        assert (stats.workers, stats.rate_tokens) == (1, 1), stats
        assert refused_now(pool)  # no room, for a job that cannot wait
        async with trio.open_nursery() as nursery:
            line = Line(pool, nursery)
            await line.join("a", key="a")  # saturated: no worker for it
            assert checked(pool).workers == 1
            nursery.start_soon(line.submit, "none", None, 1)
            stats = await settle(pool)
            assert line.admitted == ["none"], (trio.current_time(), line.admitted)
            assert trio.current_time() == 0.5
            assert (stats.workers, stats.waiting_submitters) == (2, 1)
        assert line.admitted == ["none", "a"]
    assert_no_bookkeeping(pool)


async def test_a_paced_pool_keeps_growing_a_worker_a_token_for_its_line(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A hand-off pool with a rate of 1, at its maximum, three submitters
    blocked; a resize lets it grow: the workers it starts find one token
    (the others retire at once, ``idle_timeout=0``), and then the pool
    starts one worker a token, one a second, until every submitter is in.

    Before the fix the pacer, once it had started a worker for the line,
    slept until woken: the worker took its token and its submitter's job
    and woke nobody, so the third submitter waited for a job to end (at
    10 s, not 3 s) though the pool could grow and a token was there."""
    admitted_at: dict[str, float] = {}
    async with trio_pool.open_pool(1, capacity=0, rate=1, idle_timeout=0) as pool:
        pool.submit_nowait(trio.sleep, 10)
        await trio.sleep(1)  # a token again
        async with trio.open_nursery() as nursery:

            async def submit(tag: str) -> None:
                await pool.submit(trio.sleep, 10)
                admitted_at[tag] = trio.current_time()

            for tag in ("s1", "s2", "s3"):
                nursery.start_soon(submit, tag)
                await trio.testing.wait_all_tasks_blocked()
            assert checked(pool).waiting_submitters == 3
            pool.resize(1, max_workers=4)
            await settle(pool)
            assert admitted_at == {"s1": 1}
            await trio.sleep(1.5)  # a worker and a token for s2 at 2 s
            stats = await settle(pool)
            assert admitted_at == {"s1": 1, "s2": 2}
            assert (stats.workers, stats.waiting_submitters) == (3, 1)
        assert admitted_at == {"s1": 1, "s2": 2, "s3": 3}
        assert checked(pool).workers == 4
    assert_no_bookkeeping(pool)


# ------------------------------------------------------- the one decision


async def test_a_second_idle_worker_is_woken_with_the_first_job_in_line(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Two idle workers, one place: the first job is handed over (a worker
    being woken), the second queued, the third wakes the other worker with
    the queued one (`WAKE`), itself taking the place; a fourth is refused.
    They start in submission order, and a blocked submitter, admitted as
    the fourth would be, starts after them.

    Fails if `Admission._hand_over_first` hands the new job over ahead of
    the queued one (the third would start before the second)."""
    started: list[str] = []

    async def note(tag: str) -> None:
        started.append(tag)
        await trio.sleep(1)

    async with trio_pool.open_pool(2, capacity=1) as pool:
        await settle(pool)
        for tag in ("j1", "j2", "j3"):
            pool.submit_nowait(note, tag)
            checked(pool)
        stats = checked(pool)
        assert (stats.idle_workers, stats.queued, stats.running) == (0, 1, 2)
        with pytest.raises(trio_pool.PoolOverloaded):
            pool.submit_nowait(note, "j4")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.submit, note, "s")
            stats = await settle(pool)
            assert sorted(started) == ["j1", "j2"]  # (two workers woken at once)
            assert stats.waiting_submitters == 1
        assert sorted(started[2:]) == ["j3", "s"]
    assert_no_bookkeeping(pool)


async def test_beside_starting_workers_the_second_idle_one_takes_the_first_in_line(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The same through the decision in full (`_decide`: workers are being
    started, so `offer` does not take its inlined path): the first job is
    handed to an idle worker, three are queued (one place, and one for each
    worker being started), the fifth wakes the other idle worker with the
    first queued job; the fifth is the one left queued.

    Fails if `Admission._hand_over_first` hands the new job over ahead of
    the queued ones (the fifth would start before the second)."""
    started: list[str] = []

    async def note(tag: str) -> None:
        started.append(tag)
        await trio.sleep(1)

    async with trio_pool.open_pool(
        2, max_workers=4, capacity=1, idle_timeout=None
    ) as pool:
        await settle(pool)
        pool.resize(4, max_workers=4)  # two workers being started
        for tag in ("j1", "j2", "j3", "j4", "j5"):
            pool.submit_nowait(note, tag)
            checked(pool)
        with pytest.raises(trio_pool.PoolOverloaded):
            pool.submit_nowait(note, "j6")
        stats = await settle(pool)
        assert sorted(started) == ["j1", "j2", "j3", "j4"], started
        assert (stats.running, stats.queued) == (4, 1)
    assert started[4:] == ["j5"]
    assert_no_bookkeeping(pool)


async def test_grow_while_workers_start_and_retire_with_capacity_zero(
    autojump_clock: trio.abc.Clock,
) -> None:
    """``capacity=0``, ``idle_timeout=0``: each job beyond the idle workers
    starts one (`GROW`) until the maximum, then one is refused; a job
    offered while a worker it started has not run yet is queued for it,
    not counted as queued. As they end the workers retire to the minimum
    at once, and a blocked submitter is served by the worker that ends a
    job, not by a new one.

    Fails if `_decide` grows beyond ``max_workers`` (a fourth worker is
    started for the job that must be refused)."""
    async with trio_pool.open_pool(
        1, max_workers=3, capacity=0, idle_timeout=0
    ) as pool:
        jobs = [pool.submit_nowait(trio.sleep, 1)]  # the idle one takes it
        for _ in range(2):
            jobs.append(pool.submit_nowait(trio.sleep, 1))  # a worker each
            assert checked(pool).queued == 0
        stats = checked(pool)
        assert (stats.workers, stats.running) == (3, 3)
        with pytest.raises(trio_pool.PoolOverloaded):
            pool.submit_nowait(trio.sleep, 1)
        async with trio.open_nursery() as nursery:
            line = Line(pool, nursery)
            await line.join("s")
            stats = checked(pool)
            assert (stats.workers, stats.waiting_submitters) == (3, 1)
            await trio.sleep(1)  # one worker takes s, the others retire
            stats = await settle(pool)
            assert line.admitted == ["s"]
            assert (stats.workers, stats.running, stats.idle_workers) == (1, 1, 0)
        await pool.join()
        stats = await settle(pool)
        assert (stats.workers, stats.idle_workers) == (1, 1)
        jobs += [pool.submit_nowait(trio.sleep, 1) for _ in range(3)]
        assert checked(pool).workers == 3
    assert all(job.state is trio_pool.JobState.SUCCEEDED for job in jobs)
    assert_no_bookkeeping(pool)


# ----------------------------------------------------------- wait_for_room


async def wait_then_probe(
    pool: trio_pool.Pool, woke: list[float], key: Hashable = None
) -> None:
    """Wait for room; at once, `submit_nowait` must be accepted."""
    await pool.wait_for_room()
    woke.append(trio.current_time())
    checked(pool)
    pool.submit_nowait(trio.sleep, 1, key=key)


@pytest.mark.parametrize("rate", [None, 1.0])
@pytest.mark.parametrize("keyed", [False, True])
async def test_wait_for_room_returns_exactly_when_submit_nowait_would_succeed(
    autojump_clock: trio.abc.Clock, keyed: bool, rate: float | None
) -> None:
    """Each ¼ s, while a watcher waits, `submit_nowait` must be refused;
    when it returns, it is accepted at once. Room appears as a job ends
    (at 2 s, a job of 2 s), and, with a rate, as the next token comes (a
    job of ¼ s leaves its worker idle until then). With keys a submitter of
    a saturated key waits in the line throughout, and lets the watcher by.

    Fails if the pacer wakes no watcher as a token comes (`PacedCore._pace`'s
    last step), or if `KeyedCore._blocked_ahead` counts a line of saturated
    keys as ahead (the watcher would wait beside the idle worker)."""
    async with trio_pool.open_pool(
        2,
        capacity=0,
        rate=rate,
        per_key_limit=1 if keyed else None,
    ) as pool:
        long = pool.submit_nowait(trio.sleep, 100, key="k" if keyed else None)
        async with trio.open_nursery() as nursery:
            if keyed:  # waits throughout: its key is saturated, no place aside
                submit_of_k = functools.partial(pool.submit, key="k")
                nursery.start_soon(submit_of_k, trio.sleep, 0)
            await trio.sleep(1)  # a token for the first round
            for round_ in range(2):
                pool.submit_nowait(trio.sleep, 0.25 if rate else 2)
                woke: list[float] = []
                nursery.start_soon(wait_then_probe, pool, woke)
                await settle(pool)
                begun = trio.current_time()
                while not woke:
                    assert refused_now(pool), trio.current_time()
                    await trio.sleep(0.25)
                    await settle(pool)
                # (a rate of 1: the token after the job's comes 1 s later)
                assert woke == [begun + (1 if rate else 2)], (round_, woke, begun)
                assert checked(pool).waiting_submitters == keyed
                await trio.sleep(2)  # the probe's job ends; a full bucket
            long.cancel()
    assert_no_bookkeeping(pool)


# --------------------------------------------------------- going down


class Die(BaseException):
    """What a job raises to take its worker, and the pool, down."""


async def die_after(seconds: float) -> None:
    await trio.sleep(seconds)
    raise Die("down")


async def interrupt_after(seconds: float) -> None:
    await trio.sleep(seconds)
    raise KeyboardInterrupt


async def hold_shielded(seconds: float) -> None:
    """A job that outlives the pool's cancellation for ``seconds``."""
    with trio.CancelScope(shield=True):
        await trio.sleep(seconds)


@pytest.mark.parametrize("how", ["error", "ctrl_c", "outside"])
async def test_a_pool_going_down_serves_or_refuses_every_blocked_submitter(
    autojump_clock: trio.abc.Clock, how: str
) -> None:
    """A scaling pool at its maximum goes down at 1 s (a job's error, a
    Ctrl-C in a job, a cancellation from outside) while a shielded job
    keeps a worker for 2 s more, and submitters of a saturated key, of no
    key and of a free key wait in another task. After 1 s: no worker was
    started (a worker ended without the pool's word: it grows no more)
    though a job was offered that, before, would have started one; each
    submitter ends, accepted (then cancelled) or refused, none hangs.

    Fails if `PoolCore.worker_exited` leaves ``_growth_limit`` as it was (a
    worker is started for the probe at 1.5 s), or if nothing closes the
    pool once its last worker ended (the submitters hang: ``fail_after``)."""
    line_done = trio.Event()
    outcomes: dict[str, str] = {}
    workers_seen: list[int] = []
    probe: list[trio_pool.Job[Any] | None] = []

    async def submit(pool: trio_pool.Pool, tag: str, key: Hashable) -> None:
        try:
            job = await pool.submit(trio.sleep, 1, key=key)
        except trio_pool.PoolClosed:
            outcomes[tag] = "refused"
        else:
            await job.wait()
            outcomes[tag] = job.state.value

    async def outside(pool: trio_pool.Pool, scope: trio.CancelScope) -> None:
        async with trio.open_nursery() as line:
            for tag, key in (("a", "a"), ("none", None), ("b", "b")):
                line.start_soon(submit, pool, tag, key)
                await trio.testing.wait_all_tasks_blocked()
            assert pool.statistics().waiting_submitters == 3
            await trio.sleep_until(1)
            if how == "outside":
                scope.cancel()
            await trio.sleep(0.5)
            stats = pool.statistics()
            workers_seen.append(stats.workers)
            # before the pool went down, a job without a key started a worker
            try:
                probe.append(pool.submit_nowait(trio.sleep, 1))
            except (trio_pool.PoolOverloaded, trio_pool.PoolClosed):
                probe.append(None)
            workers_seen.append(pool.statistics().workers)
            assert_balanced(pool)
        line_done.set()

    ending = {"error": die_after, "ctrl_c": interrupt_after}.get(how, hold_shielded)
    cleaned_up: list[bool] = []
    expected = (Die, KeyboardInterrupt, trio_pool.PoolCrashed)
    comes_out = (
        contextlib.nullcontext() if how == "outside" else pytest.raises(expected)
    )
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as scope:
                with comes_out:
                    async with trio_pool.open_pool(
                        2, max_workers=4, capacity=1, per_key_limit=1
                    ) as pool:
                        pool.submit_nowait(ending, 1, key="x")
                        pool.submit_nowait(hold_shielded, 3, key="y")
                        pool.submit_nowait(trio.sleep, 10, key="a")
                        pool.submit_nowait(trio.sleep, 10, key="z")
                        await settle(pool)
                        pool.submit_nowait(trio.sleep, 10, key="a")  # aside
                        stats = checked(pool)
                        assert (stats.workers, stats.queued) == (4, 1)
                        nursery.start_soon(outside, pool, scope)
                        # The usual cleanup, shielded: the body stays while
                        # the pool goes down, and its join returns once the
                        # last worker ends (the jobs left are cancelled).
                        with trio.CancelScope(shield=True):
                            with trio.move_on_after(20) as patience:
                                await trio.sleep(2)
                                await pool.join()
                            cleaned_up.append(not patience.cancelled_caught)
                            assert trio.current_time() == 3
            await line_done.wait()
    assert cleaned_up == [True]
    assert workers_seen == [1, 1], workers_seen
    assert probe == [None] or (probe[0] is not None and probe[0].done)
    assert set(outcomes) == {"a", "none", "b"}
    assert set(outcomes.values()) <= {"refused", "cancelled"}, outcomes
    assert_no_bookkeeping(pool)
