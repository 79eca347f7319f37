"""Shedding by the caller's deadline: when would a job submitted now start?

The estimate uses the pool's moving average of running times (``mean``,
kept by the core) and what is in the pool now:

* each busy worker is free at ``max(now, its job's start + mean)``; a worker
  that is idle, or that the pool may still add, is free now;
* the jobs already queued, then the new one, start in order on the worker
  free first, each taking ``mean``: with every worker free within ``mean``
  of now, the k-th start is the ``(k mod W)``-th free time plus
  ``(k div W) * mean``, for ``W`` workers;
* with a rate limit, the k-th start is no earlier than the k-th token;
* with a saturated key, no earlier than the key's turn: ``mean`` per round
  of ``per_key_limit`` jobs of that key set aside before it.

It is exact when every job takes the same time, in a pool without a rate
limit and for a job without a key. Otherwise it is an approximation: jobs
that vary make a finish estimated near the deadline fall on either side of
it; a rate limit is taken as a separate bound on the start (a start delayed
by a token also delays the worker's next job, which the estimate misses);
for a saturated key, the key's running jobs are assumed to have just
started and the time its queued job waits in the queue is not counted.

`ShedByDeadline` is the core's transition that refuses such a job (`Intake`
builds on it).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import trio
from trio.lowlevel import enable_ki_protection

from ._errors import PoolOverloaded
from ._job import RUNNING
from ._state import CoreState

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._job import Job


def key_floor(now: float, mean: float, before: int, limit: int) -> float:
    """The earliest start of a job whose key is saturated, with ``before``
    jobs of its key set aside ahead of it: one ``mean`` per round of
    ``limit`` of them, and one more for the key's running jobs."""
    return now + (before // limit + 1) * mean


def estimated_start(
    now: float,
    mean: float,
    deadline: float,
    *,
    ahead: int,
    width: int,
    floor: float,
    free_at: Callable[[], list[float]],
) -> float:
    """When a job submitted at ``now`` would start (see the module).

    Args:
        now: the current time.
        mean: the moving average of running times.
        deadline: the caller's deadline.
        ahead: jobs that start before it (queued, handed over, blocked).
        width: workers the pool may run.
        floor: the earliest start the rate limit and its key allow.
        free_at: when each live worker is free (``now`` for an idle one,
            its job's start plus ``mean`` for a busy one); called only
            when the quick bound does not settle it.

    When even the latest start the bounds allow (every worker is free within
    ``mean`` of now) finishes before ``deadline``, that bound is returned
    without looking at each worker; the exact estimate, which a refusal
    always gets, costs a pass over the workers.
    """
    rounds, place = divmod(ahead, width)
    earliest = now + rounds * mean
    if max(earliest + mean, floor) + mean < deadline:
        return max(earliest + mean, floor)  # in time even at the latest
    free = free_at()
    free.extend([now] * (width - len(free)))
    free.sort()
    return max(free[place] + rounds * mean, floor)


def free_at(now: float, mean: float, held: list[Job[Any] | None]) -> list[float]:
    """When each live worker is free, by the mean running time, from the job
    each holds (None: idle)."""
    free: list[float] = []
    for job in held:
        if job is None or job.state is not RUNNING:
            free.append(now)  # idle, or about to start a handed job
        else:  # (a job started before the pool measured has no start time)
            started: float = getattr(job, "_t_started", now)
            free.append(max(now, started + mean))
    return free


def shed_refusal(
    job_name: str,
    pool_name: str,
    now: float,
    mean: float,
    deadline: float,
    *,
    ahead: int,
    width: int,
    floor: float,
    held: Callable[[], list[Job[Any] | None]],
) -> str | None:
    """Why a job submitted now must be shed, or None if it would finish in
    time (the arguments as in `estimated_start`; ``held()`` as in `free_at`,
    asked only if needed)."""
    start = estimated_start(
        now,
        mean,
        deadline,
        ahead=ahead,
        width=width,
        floor=floor,
        free_at=lambda: free_at(now, mean, held()),
    )
    if start + mean < deadline:  # (at the deadline itself it is cancelled)
        return None
    what = "start" if start > deadline else "finish"
    return (
        f"pool {pool_name!r} sheds job {job_name!r}: it would {what} at about "
        f"{start - now if what == 'start' else start + mean - now:.3g}s from "
        f"now, after the caller's deadline in {deadline - now:.3g}s "
        f"(estimated from a mean running time of {mean:.3g}s)"
    )


class ShedByDeadline(CoreState):
    """The core's shedding transition (`Intake` builds on it); the variants
    add their limits to ``_jobs_ahead`` and ``_shed_floor``."""

    @enable_ki_protection
    def shed_by_deadline(self, job: Job[Any]) -> None:
        """Refuse ``job`` if it cannot finish before the caller's deadline.

        Raises:
            PoolOverloaded: with ``reason == "deadline"`` (counted as rejected).
        """
        deadline = trio.current_effective_deadline()
        if deadline == math.inf or self._closed:  # (closed: PoolClosed instead)
            return
        if not self._timed:  # measure from now on; no estimate until then
            self._begin_timing()
            return
        mean = self._mean_run
        if mean is None:
            return
        now = trio.current_time()
        ahead = self._jobs_ahead(job)
        message = shed_refusal(
            job.name,
            self._name,
            now,
            mean,
            deadline,
            ahead=ahead,
            width=max(self._max_workers, len(self._crew.workers)),
            floor=self._shed_floor(job, now, mean, ahead),
            held=lambda: [worker.job for worker in self._crew.workers],
        )
        if message is None:
            return
        self._counts.shed += 1
        error = PoolOverloaded(message, "deadline")
        self._refused("deadline")
        raise error

    def _may_run(self, job: Job[Any]) -> bool:
        """Whether a worker may start ``job`` (with keys: its key has room)."""
        return True

    def _waiters_who_may_run(self) -> int:
        """Blocked submitters whose job a worker may start (`_may_run`):
        they start before a new job, and a worker is started for them
        (`PoolCore.resize`, the pacer)."""
        return len(self._waiters)

    def _jobs_ahead(self, job: Job[Any]) -> int:
        """How many jobs would start before ``job``: queued, handed over, or
        of a blocked submitter whose key may run (a pool with priorities
        counts only those of its level or higher)."""
        return self._queue.live + self._crew.waking + self._waiters_who_may_run()

    def _shed_floor(self, job: Job[Any], now: float, mean: float, ahead: int) -> float:
        """The earliest start of ``job`` that the pool's limits allow, with
        ``ahead`` jobs before it (a pool with a rate or keys adds its own)."""
        return now
