"""Issue 17, adversary: an idle worker that may retire never spins.

With ``idle_timeout=0``, a worker above the minimum whose idle time ran out
while jobs waited that it could not take (no start token yet, or only
submitters of a saturated key) was refused retirement, found nothing to
start and parked again with a new timer of 0: a busy loop at one instant,
which under a mock clock stops time itself (the token never comes).
"""

from __future__ import annotations

import pytest
import trio

import trio_pool

from .helpers import assert_balanced, assert_no_bookkeeping


class WorkerSteps(trio.abc.Instrument):
    """Counts the steps the pool's worker tasks take."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.startswith("trio_pool worker"):
            self.steps += 1


async def steps_while_the_main_task_yields(times: int) -> int:
    """How many steps the workers take while this task yields ``times``
    times, the clock standing still."""
    instrument = WorkerSteps()
    trio.lowlevel.add_instrument(instrument)
    try:
        for _ in range(times):
            await trio.lowlevel.cancel_shielded_checkpoint()
    finally:
        trio.lowlevel.remove_instrument(instrument)
    return instrument.steps


async def test_waiting_for_a_start_token(mock_clock: trio.abc.Clock) -> None:
    """(``mock_clock``: time stands still, no token comes.)"""
    async with trio_pool.open_pool(
        1, max_workers=2, capacity=2, rate=1, idle_timeout=0
    ) as pool:
        pool.submit_nowait(trio.sleep_forever)  # spends the token
        pool.submit_nowait(trio.sleep, 1)  # grows a worker: no token
        steps = await steps_while_the_main_task_yields(100)
        assert steps < 10, f"an idle worker took {steps} steps"
        assert pool.statistics().workers == 1  # the extra one retired
        assert_balanced(pool)
        await pool.shutdown(grace_period=0)
    assert_no_bookkeeping(pool)


async def test_waiting_beside_a_submitter_of_a_saturated_key(
    mock_clock: trio.abc.Clock,
) -> None:
    async with trio_pool.open_pool(
        1, max_workers=2, capacity=0, per_key_limit=1, idle_timeout=0
    ) as pool:
        pool.submit_nowait(trio.sleep_forever, key="a")
        pool.submit_nowait(trio.sleep, 0, key="b")  # grows a worker

        async def submit_to_the_saturated_key() -> None:
            with pytest.raises(trio_pool.PoolClosed):
                await pool.submit(trio.sleep, 1, key="a")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit_to_the_saturated_key)  # it waits
            steps = await steps_while_the_main_task_yields(100)
            assert steps < 10, f"an idle worker took {steps} steps"
            assert pool.statistics().waiting_submitters == 1
            assert_balanced(pool)
            await pool.shutdown(grace_period=0)
    assert_no_bookkeeping(pool)
