"""Assertions shared by the tests."""

# pyright: reportPrivateUsage=false

from __future__ import annotations

import trio

import trio_pool


def assert_balanced(pool: trio_pool.Pool) -> None:
    """The statistics balance and the core's invariants, at any moment."""
    s = pool.statistics()
    assert s.submitted == (
        s.queued + s.running + s.succeeded + s.failed + s.timed_out + s.cancelled
    ), s
    pool._core.check_invariants()


def assert_no_bookkeeping(pool: trio_pool.Pool) -> None:
    """Nothing is left in the pool's internal structures (after it stopped)."""
    assert_balanced(pool)
    books = pool._core.books()
    stats = pool.statistics()
    assert (stats.queued, stats.running) == (0, 0), stats
    assert books.backlog == 0
    assert not books.idle
    assert not books.waiting_jobs
    assert not books.drain_parked
    assert not books.workers
    assert books.running == 0
    assert books.waking == 0
    assert books.starting == 0


async def sleep_and_return(seconds: float, value: object = None) -> object:
    """A job: sleep, then return ``value``."""
    await trio.sleep(seconds)
    return value
