"""Issue 17, adversary: metrics that stay true after the pool exits."""

from __future__ import annotations

import gc
import weakref

import pytest
import trio

import trio_pool

from .test_telemetry import Telemetry


def rejected(otel: Telemetry) -> dict[tuple[str, str], int]:
    """``trio_pool.rejected_jobs`` by (pool name, reason)."""
    return {
        (attributes["trio_pool.name"], attributes["trio_pool.rejection.reason"]): value
        for attributes, value in otel.points("trio_pool.rejected_jobs")
    }


async def test_a_refusal_after_the_pool_exited_is_counted(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A submit to an exited pool raises `PoolClosed` and counts in
    ``statistics().rejected``: the metric counts it too (it read the counts
    retired as the pool exited), and keeps nothing of the pool for it."""
    otel = Telemetry()
    async with otel.pool(1, name="late", capacity=0) as pool:
        await pool.submit(trio.sleep, 1)
        with pytest.raises(trio_pool.PoolOverloaded):
            pool.submit_nowait(trio.sleep, 1)
    assert rejected(otel) == {("late", "overloaded"): 1}
    for _ in range(2):
        with pytest.raises(trio_pool.PoolClosed):
            pool.submit_nowait(trio.sleep, 1)
    with pytest.raises(trio_pool.PoolClosed):
        await pool.submit(trio.sleep, 1)
    assert pool.statistics().rejected == 4
    assert rejected(otel) == {("late", "overloaded"): 1, ("late", "closed"): 3}
    async with otel.pool(1, name="late") as again:  # the same name adds up
        pass
    with pytest.raises(trio_pool.PoolClosed):
        again.submit_nowait(trio.sleep, 1)
    assert rejected(otel) == {("late", "overloaded"): 1, ("late", "closed"): 4}
    retired = [weakref.ref(pool), weakref.ref(again)]
    del pool, again
    gc.collect()
    assert [ref() for ref in retired] == [None, None]
    assert rejected(otel) == {("late", "overloaded"): 1, ("late", "closed"): 4}
