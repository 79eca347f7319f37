"""Assertions shared by the tests."""

from __future__ import annotations

import trio

import trio_pool
from trio_pool._job import QUEUED


def assert_balanced(pool: trio_pool.Pool) -> None:
    """The statistics balance that must hold at every moment."""
    s = pool.statistics()
    assert s.submitted == (
        s.queued + s.running + s.succeeded + s.failed + s.timed_out + s.cancelled
    ), s


def assert_no_bookkeeping(pool: trio_pool.Pool) -> None:
    """Nothing is left in the pool's internal structures (after it stopped)."""
    assert_balanced(pool)
    stats = pool.statistics()
    assert (stats.queued, stats.running) == (0, 0), stats
    assert not [job for job in pool._queue if job._state is QUEUED]
    assert pool._backlog == 0
    assert not pool._idle
    assert not pool._room_waiters
    assert not pool._drain_waiters
    assert not pool._workers
    assert pool._running == 0
    assert pool._waking == 0
    assert pool._starting == 0


async def sleep_and_return(seconds: float, value: object = None) -> object:
    """A job: sleep, then return ``value``."""
    await trio.sleep(seconds)
    return value
