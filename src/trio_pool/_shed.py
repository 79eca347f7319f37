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

It is exact when every job takes the same time. Otherwise its error is that
of using the mean for every job: for jobs that vary, a finish estimated near
the deadline may fall on either side of it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ._job import RUNNING

if TYPE_CHECKING:
    from ._core import PoolCore
    from ._job import Job


def estimated_start(core: PoolCore, job: Job[Any], now: float, mean: float) -> float:
    """When ``job``, submitted at ``now``, would start (see the module)."""
    ahead = core.backlog + core.waking
    free: list[float] = []
    for worker in core.workers:
        running = worker.job
        if running is None or running.state is not RUNNING:
            free.append(now)  # idle, or about to start a handed job (counted ahead)
        else:  # (a job started before the pool measured has no start time)
            started: float = getattr(running, "t_started", now)
            free.append(max(now, started + mean))
    free.extend([now] * max(0, core.max_workers - len(core.workers)))
    width = len(free)
    if not width:
        return math.inf
    free.sort()
    rounds, place = divmod(ahead, width)
    start = free[place] + rounds * mean
    rate = core.rate
    if rate is not None:
        start = max(start, rate.next_at() + ahead * rate.interval)
    limit = core.per_key_limit
    key = job.key if limit is not None else None
    if key is not None and core.key_active.get(key, 0) >= limit:  # type: ignore[operator]
        waiting = core.key_waiting.get(key)
        before = 0 if waiting is None else len(waiting)
        start = max(start, now + (before // limit + 1) * mean)  # type: ignore[operator]
    return max(start, now)
