"""Assertions shared by the tests, and the tests' one window into the core.

`books` and `check_invariants` are how a test reads the pool's internal
state: a snapshot of every book (``trio_pool._books.Books``) and the
invariant check that the state machine runs after every step. Tests use
these rather than reach into the pool's private fields.
"""

# pyright: reportPrivateUsage=false
# (this module is the documented window: the tests read ``Pool._core`` here)

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

import trio_pool

if TYPE_CHECKING:
    from trio_pool._books import Books


def books(pool: trio_pool.Pool) -> Books:
    """A snapshot of the pool's books (queue, workers, waiters, keys...)."""
    return pool._core.books()


def check_invariants(pool: trio_pool.Pool) -> None:
    """Assert every invariant of the pool's books (AssertionError if not)."""
    pool._core.check_invariants()


def assert_balanced(pool: trio_pool.Pool) -> None:
    """The statistics balance and the core's invariants, at any moment."""
    s = pool.statistics()
    assert s.submitted == (
        s.queued + s.running + s.succeeded + s.failed + s.timed_out + s.cancelled
    ), s
    check_invariants(pool)


def assert_no_bookkeeping(pool: trio_pool.Pool) -> None:
    """Nothing is left in the pool's internal structures (after it stopped)."""
    assert_balanced(pool)
    snapshot = books(pool)
    stats = pool.statistics()
    assert (stats.queued, stats.running) == (0, 0), stats
    assert snapshot.backlog == 0
    assert not snapshot.idle
    assert not snapshot.waiting_jobs
    assert not snapshot.drain_parked
    assert not snapshot.workers
    assert snapshot.running == 0
    assert snapshot.waking == 0
    assert snapshot.starting == 0


async def sleep_and_return(seconds: float, value: object = None) -> object:
    """A job: sleep, then return ``value``."""
    await trio.sleep(seconds)
    return value
