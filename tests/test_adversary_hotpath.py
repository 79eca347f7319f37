"""Issue 17, adversary: attacks on the fourth round of hot-path changes.

Two tests pin what held: a job cancelled as it returns (the worker keeps its
cancel scope from job to job), and a plain pool that becomes its variant
with priorities, then its timed one, mid-run (`PoolCore.finish_and_next` and
the variants' `_finish_then_next`).

A ``pool.map()`` result closed (`MapResults.aclose`) by another task while
its consumer waits for a result: the consumer ended only if a job's end
happened to wake it before the close had forgotten the jobs. The ordered
map's consumer listens to the oldest job only (and the unordered map's jobs
wake it only while they are in flight), so a job that ends after the close
woke nobody, and the consumer stayed parked forever.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import trio_pool
from trio_pool import Job

from .helpers import assert_balanced, check_invariants


async def finish_despite_cancel(seconds: float) -> float:
    """A job that takes ``seconds`` even when cancelled (its cleanup)."""
    with trio.CancelScope(shield=True):
        await trio.sleep(seconds)
    return seconds


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_waiting_consumer_ends_when_another_task_closes_the_map(
    autojump_clock: trio.abc.Clock, ordered: bool
) -> None:
    async with trio_pool.open_pool(2, capacity=10) as pool:
        got: list[float] = []
        ended_at: list[float] = []

        async def consume(results: trio_pool.MapResults[float]) -> None:
            async for value in results:
                got.append(value)
            ended_at.append(trio.current_time())

        async with pool.map(finish_despite_cancel, [5, 3], ordered=ordered) as results:
            with trio.fail_after(20):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(consume, results)
                    await trio.sleep(0.5)  # both items running; nothing done
                    await results.aclose()  # the jobs cancelled and waited for
                    assert trio.current_time() == 5
                    check_invariants(pool)
        # The consumer stopped as the map closed (at its cancellation, 0.5 s),
        # not at the end of time.
        assert ended_at == [0.5]
        assert got == []
        await pool.join()
        assert_balanced(pool)


async def test_a_job_cancelled_as_it_returns_leaves_the_next_one_alone(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The worker keeps its cancel scope from job to job: a job cancelled
    after its wait was already over returns its value (it reached no
    checkpoint), and the next job, in the same worker, is not cancelled."""
    async with trio_pool.open_pool(1, capacity=10) as pool:
        released = trio.Event()

        async def wait_for_release() -> str:
            await released.wait()
            return "first"

        first = pool.submit_nowait(wait_for_release)
        second = pool.submit_nowait(trio.sleep, 0)  # a checkpoint, at once
        third = pool.submit_nowait(trio.sleep, 1)
        await trio.testing.wait_all_tasks_blocked()
        released.set()  # the worker is scheduled with the event's wake-up,
        first.cancel()  # so the cancellation comes too late for the job
        check_invariants(pool)
        assert await first.result() == "first"
        for later in (second, third):
            await later.result()  # not cancelled: no JobCancelled
            assert later.state is trio_pool.JobState.SUCCEEDED
        assert trio.current_time() == 1
        assert_balanced(pool)


async def test_a_plain_pool_turned_prioritized_and_timed_mid_run(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Each job ends and the next starts in one transition, in the plain
    pool and in the variant with priorities it becomes (the same queue, in
    priority order); shedding makes it the timed variant, whose jobs show
    their times (the plain records made before show none)."""
    order: list[int] = []

    async def record(tag: int) -> None:
        order.append(tag)

    async with trio_pool.open_pool(1, capacity=20) as pool:
        before = [pool.submit_nowait(record, tag) for tag in range(3)]
        pool.submit_nowait(record, 10, priority=1)
        pool.submit_nowait(record, 20, priority=2)
        with trio.CancelScope(deadline=100):  # shedding begins to time
            pool.submit_nowait(record, 30, shed=True)
        timed = pool.submit_nowait(record, 40, priority=3)
        check_invariants(pool)
        await pool.join()
        assert order == [0, 40, 20, 10, 1, 2, 30], order
        assert before[1].submitted_at is None
        assert before[1].started_at == 0  # started once the pool was timed
        assert timed.submitted_at == 0
        assert timed.wait_duration == 0
        assert_balanced(pool)


async def test_a_submitted_record_has_the_fields_job_init_sets() -> None:
    """A plain pool makes its job records with `Job.__init__`'s stores
    inlined (`Intake.new_job`): the same fields, with the same values (but
    the holder, which the offer that queued the job cleared)."""
    release = trio.Event()

    async def noop(*_: object) -> None:
        pass

    def fields(job: object) -> dict[str, Any]:
        return {
            field: getattr(job, field)
            for field in Job.__slots__
            if field not in {"__weakref__", "_holder"} and hasattr(job, field)
        }

    new: Any = object.__new__
    init: Any = vars(Job)["__init__"]
    async with trio_pool.open_pool(1, capacity=4) as pool:
        pool.submit_nowait(release.wait)  # the one worker is busy: the rest queue
        await trio.testing.wait_all_tasks_blocked()
        made = [
            pool.submit_nowait(noop, 1, name="named", timeout=5.0),
            await pool.submit(noop, 2),
        ]
        for job in made:
            submitted = fields(job)
            reference = new(Job)
            given = ("_core", "_fn", "_args", "_label", "_timeout")
            init(reference, *(submitted[field] for field in given), None)
            assert submitted == fields(reference)
        assert [fields(job)["_args"] for job in made] == [(1,), (2,)]
        assert fields(made[0])["_label"] == "named"
        release.set()
