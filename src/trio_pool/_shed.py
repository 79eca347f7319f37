"""Shedding by the caller's deadline: when would a job submitted now start?

The estimate uses the pool's moving average of running times (``mean``,
see `PoolCore.mean_run`) and what is in the pool now:

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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._job import RUNNING

if TYPE_CHECKING:
    from ._core import PoolCore
    from ._job import Job


def estimated_start(
    core: PoolCore, job: Job[Any], now: float, mean: float, deadline: float
) -> float:
    """When ``job``, submitted at ``now``, would start (see the module).

    When even the latest start the bounds allow (every worker is free within
    ``mean`` of now) finishes before ``deadline``, that bound is returned
    without looking at each worker; the exact estimate, which a refusal
    always gets, costs a pass over the workers.
    """
    ahead = core.backlog + core.waking + len(core.room_waiters)
    width = max(core.max_workers, len(core.workers))
    rounds, place = divmod(ahead, width)
    earliest = now + rounds * mean
    floor = now  # what the rate limit and the key impose
    rate = core.rate
    if rate is not None:
        floor = max(floor, rate.next_at() + ahead * rate.interval)
    limit = core.per_key_limit
    key = job.key if limit is not None else None
    if key is not None and core.key_active.get(key, 0) >= limit:  # type: ignore[operator]
        waiting = core.key_waiting.get(key)
        before = 0 if waiting is None else len(waiting)
        floor = max(floor, now + (before // limit + 1) * mean)  # type: ignore[operator]
    if max(earliest + mean, floor) + mean < deadline:
        return max(earliest + mean, floor)  # in time even at the latest
    free: list[float] = []
    for worker in core.workers:
        running = worker.job
        if running is None or running.state is not RUNNING:
            free.append(now)  # idle, or about to start a handed job (counted ahead)
        else:  # (a job started before the pool measured has no start time)
            started: float = getattr(running, "t_started", now)
            free.append(max(now, started + mean))
    free.extend([now] * (width - len(free)))
    free.sort()
    return max(free[place] + rounds * mean, floor)
