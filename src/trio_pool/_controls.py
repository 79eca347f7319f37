"""`PoolControls`: the pool's size, stopping, waiting and statistics.

The half of `Pool`'s public methods that do not submit: they check their
arguments and caller, then call one transition of the core, as `Pool`'s do.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from ._checks import MAX_WORKERS, check_int, check_max_workers, check_seconds
from ._log import INFO, log

if TYPE_CHECKING:
    from ._core import PoolCore
    from ._statistics import PoolStatistics


class PoolControls:
    """The methods of `Pool` that size, stop, wait on and read a pool."""

    __slots__ = ()
    _core: PoolCore

    @property
    def name(self) -> str:
        """The pool's name, as it appears in logs, spans and metrics."""
        return self._core.name

    def resize(self, workers: int, *, max_workers: int | None = None) -> None:
        """Change the pool's size while it runs. Never blocks.

        Growing takes effect at once: new workers start for the jobs already
        waiting. Shrinking takes effect for every job started after it:
        surplus idle workers retire at once, busy ones as their jobs end,
        without taking another; a running job is never cancelled for it.

        Each value means what it means in `open_pool`: ``resize(4)`` makes
        a fixed pool of 4, ``resize(2, max_workers=8)`` one that scales.

        Args:
            workers: the new size (the minimum when ``max_workers`` is set).
            max_workers: the new maximum; ``None``: a fixed pool.

        Raises:
            TypeError, ValueError: a bad argument (``max_workers < workers``
                included).
            PoolClosed: the pool has stopped.
            RuntimeError: called from another thread or another Trio run.
        """
        core = self._core
        check_int("workers", workers, 1, MAX_WORKERS)
        maximum = check_max_workers(workers, max_workers)
        core.check_caller("resize")
        core.resize(workers, maximum)

    # --------------------------------------------------------------- stopping

    def close(self) -> None:
        """Stop taking work: `submit` raises `PoolClosed` from now on.

        Queued and running jobs still run. Submitters already waiting for room
        get `PoolClosed`. Closing twice does nothing.

        Raises:
            RuntimeError: called from another thread or another Trio run.
        """
        core = self._core
        core.check_caller("close")
        core.close()

    async def join(self) -> None:
        """Wait until every accepted job is done, without closing the pool.

        As ``asyncio.Queue.join``: it wakes at a moment when no accepted job
        is left unfinished, so jobs accepted while it waits are waited for
        too; other tasks may submit more before the caller runs again.
        Submitters still waiting for room are not waited for (their jobs are
        not accepted yet). This is a checkpoint.

        Raises:
            RuntimeError: called from another thread or another Trio run, or
                from inside one of the pool's own jobs (it would wait for
                itself).
        """
        core = self._core
        core.check_caller("join")
        self._refuse_own_job("join", "wait from outside the pool's jobs")
        await core.wait_drained()

    async def wait_for_room(self) -> None:
        """Wait until `submit_nowait` would accept a job, without submitting.

        Returns at once if it would now, else as soon as room appears: an
        idle worker, a place in the queue, or room to start a worker. Blocked
        submitters keep their turn: it returns only when a job would be
        accepted after every one of them. Another task may take the room
        before the caller runs again, so submit in a loop::

            while True:
                await pool.wait_for_room()
                try:
                    job = pool.submit_nowait(fn, item)
                except trio_pool.PoolOverloaded:
                    continue
                break

        The room is that of a job without ``key=``; in a pool with ``rate=``,
        an idle worker is room only once a start token is there, and room to
        start a worker is none (a new worker may find no token). Nothing is
        polled: the transitions that free room wake the waiting tasks. This
        is a checkpoint.

        Raises:
            PoolClosed: the pool is closed, or closes while it waits.
            RuntimeError: called from another thread or another Trio run, or
                from inside one of the pool's own jobs (where it could wait
                for itself: use `submit_nowait` there).
        """
        core = self._core
        core.check_caller("wait_for_room")
        self._refuse_own_job("wait_for_room", "use submit_nowait there")
        await core.wait_for_room()

    def _refuse_own_job(self, what: str, instead: str) -> None:
        if self._core.in_own_job():
            raise RuntimeError(
                f"{what}() of pool {self.name!r} was called inside one of its "
                f"own jobs, and would wait for that job to end; {instead}"
            )

    async def shutdown(self, grace_period: float | None = None) -> None:
        """Close the pool, let it drain, then cancel whatever is left.

        Waits up to ``grace_period`` seconds (``None``: no limit) for queued
        and running jobs to finish, then cancels the rest (they end
        `JobState.CANCELLED`) and waits for them. When it returns, every job
        is done. This is a checkpoint.

        Raises:
            TypeError, ValueError: a bad ``grace_period``.
            RuntimeError: called from another thread or another Trio run, or
                from inside one of the pool's own jobs (it would wait for
                itself; call `close` there).
        """
        grace = check_seconds("grace_period", grace_period)
        core = self._core
        core.check_caller("shutdown")
        self._refuse_own_job(
            "shutdown",
            "call pool.close() there, and shut down from outside the pool's jobs",
        )
        core.close()
        with trio.move_on_after(math.inf if grace is None else grace):
            await core.wait_drained()
            return
        left = core.statistics()
        log(
            INFO,
            "pool %r: grace period of %ss over, cancelling %d running and %d "
            "queued jobs",
            core.name,
            grace,
            left.running,
            left.queued,
        )
        core.cancel_everything()
        await core.wait_drained()

    # ------------------------------------------------------------- statistics

    def statistics(self) -> PoolStatistics:
        """Return a `PoolStatistics` snapshot. Never blocks.

        Safe to call from any thread (metric readers do); from another thread
        the snapshot may be taken in the middle of a transition.
        """
        return self._core.statistics()
