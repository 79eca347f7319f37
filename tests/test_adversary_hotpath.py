"""Issue 17, adversary: attacks on the fourth round of hot-path changes.

A ``pool.map()`` result closed (`MapResults.aclose`) by another task while
its consumer waits for a result: the consumer ended only if a job's end
happened to wake it before the close had forgotten the jobs. The ordered
map's consumer listens to the oldest job only (and the unordered map's jobs
wake it only while they are in flight), so a job that ends after the close
woke nobody, and the consumer stayed parked forever.
"""

from __future__ import annotations

import pytest
import trio

import trio_pool

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
