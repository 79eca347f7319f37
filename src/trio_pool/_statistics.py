"""The snapshot returned by `Pool.statistics`."""

from __future__ import annotations

from typing import final

import attrs


@final
class Counts:
    """The pool's running counts; only the core writes them."""

    __slots__ = (
        "cancelled",
        "closed_refusals",
        "failed",
        "rejected",
        "running",
        "shed",
        "submitted",
        "succeeded",
        "timed_out",
    )

    def __init__(self) -> None:
        self.submitted = 0
        self.running = 0
        self.succeeded = 0
        self.failed = 0
        self.timed_out = 0
        self.cancelled = 0
        self.rejected = 0
        self.shed = 0  # of the rejected: refused by the deadline
        self.closed_refusals = 0  # of the rejected: the pool was closed

    def finished(self) -> int:
        """Jobs in a terminal state."""
        return self.succeeded + self.failed + self.timed_out + self.cancelled

    def rejected_by_reason(self) -> dict[str, int]:
        """The refusals by reason (``overloaded``, ``closed``, ``deadline``)."""
        return {
            "overloaded": self.rejected - self.shed - self.closed_refusals,
            "closed": self.closed_refusals,
            "deadline": self.shed,
        }

    def unfinished(self) -> int:
        """Accepted jobs not finished yet (queued, handed over or running)."""
        return self.submitted - self.finished()


@attrs.frozen
class PoolStatistics:
    """A snapshot of a pool, in the manner of Trio's own ``statistics()``.

    At every moment, ``submitted == queued + running + succeeded + failed +
    timed_out + cancelled``. A job handed to an idle worker that has not run
    since counts as running (its `Job.state` is still ``QUEUED`` until the
    worker starts it, at its next step), and so does a job taken beyond the
    capacity for a worker being started, so ``queued`` counts only the jobs
    that wait for a worker, and never exceeds ``capacity``.
    """

    name: str
    """The pool's name."""
    workers: int
    """Worker tasks alive now."""
    idle_workers: int
    """Workers waiting for a job now."""
    min_workers: int
    """The fewest workers the pool keeps."""
    max_workers: int
    """The most workers the pool may run."""
    capacity: int
    """How many jobs may wait in the queue."""
    queued: int
    """Accepted jobs waiting for a worker (in the queue, or set aside for
    their key): at most ``capacity`` (after a `Pool.resize` down, the jobs
    accepted before it may exceed it until the queue drains)."""
    running: int
    """Jobs executing now, jobs handed to an idle worker that starts them at
    its next step, and jobs taken beyond the capacity for a worker being
    started (it takes one when it runs)."""
    waiting_submitters: int
    """Tasks blocked in `Pool.submit` waiting for room (their jobs are not
    accepted yet, so they are not counted in ``submitted``)."""
    submitted: int
    """Jobs accepted since the pool opened."""
    succeeded: int
    """Jobs that returned a value."""
    failed: int
    """Jobs that raised an exception."""
    timed_out: int
    """Jobs cancelled by their time limit."""
    cancelled: int
    """Jobs cancelled by `Job.cancel`, by shutdown or from outside the pool."""
    rejected: int
    """Submissions refused with `PoolOverloaded` or `PoolClosed` (those
    shed by the caller's deadline included)."""
    closed: bool
    """Whether the pool has stopped taking work."""
    rate_tokens: float | None
    """Job starts the rate limit allows at once now, from 0 to ``burst``
    (fractions: part of the next token); ``None`` in a pool without ``rate``."""
    waiting_for_key: int | None
    """Accepted jobs set aside because their key is at ``per_key_limit``
    (counted in ``queued`` too); ``None`` in a pool without ``per_key_limit``."""
    active_keys: int | None
    """Keys with jobs queued, handed over or running now (an idle key leaves
    nothing behind); ``None`` in a pool without ``per_key_limit``."""
    shed: int
    """Submissions refused because the job could not finish before the
    caller's deadline (``shed=True``; counted in ``rejected`` too)."""
