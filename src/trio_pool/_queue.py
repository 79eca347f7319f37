"""The queue of accepted jobs waiting for a worker, with its tombstones.

A job cancelled while queued stays in the deque as a tombstone (removing it
from the middle would cost a pass over the queue); `JobQueue.take_first` skips
tombstones, ``live`` counts only the jobs that will run, and the tombstones
are swept once they outnumber the live jobs. The queue also counts the jobs
a pool with keys sets aside for their key (``held``): they count against
the capacity as queued jobs do, so the room check reads both here. The core
owns the queue: it decides when a job goes in or comes out; the queue only
keeps them in order.
"""

# The job record's fields belong to the core; Job is its public face.
# pyright: reportPrivateUsage=false

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from ._job import QUEUED

if TYPE_CHECKING:
    from ._job import Job


class JobQueue(deque["Job[Any]"]):
    """Accepted jobs in the order they start; cancelled ones are skipped.

    A `deque` itself, so that `PoolCore.start_next` and `Intake.offer` (the
    hot paths) can pop and push without a call; only its own methods and
    those inlined copies of `take_first` and `push` change it.
    """

    __slots__ = ("held", "live")

    live: int
    """Jobs in the queue that are still QUEUED (tombstones excluded)."""
    held: int
    """Jobs set aside for their key (kept by the core's `KeyBooks`), which
    count against the capacity too; always 0 in a pool without keys."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.held = 0

    def push(self, job: Job[Any]) -> None:
        """Queue ``job`` at the back (an accepted job: it has no holder now)."""
        job._holder = None
        self.append(job)
        self.live += 1

    def push_all(self, jobs: list[Job[Any]]) -> None:
        """`push` each of ``jobs``, in order."""
        for job in jobs:
            job._holder = None
        self.extend(jobs)
        self.live += len(jobs)

    def push_front(self, job: Job[Any]) -> None:
        """Put ``job`` back at the head (a worker gave it back unstarted)."""
        job._holder = None
        self.appendleft(job)
        self.live += 1

    def take_first(self) -> Job[Any] | None:
        """Take the first live job, dropping the tombstones before it."""
        while self:
            job = self.popleft()
            if job.state is QUEUED:
                self.live -= 1
                return job
        return None

    def withdraw(self) -> None:
        """One queued job was cancelled: it stays as a tombstone."""
        self.live -= 1
        if len(self) > 2 * self.live + 32:  # sweep the tombstones
            live = [job for job in self if job.state is QUEUED]
            self.clear()
            self.extend(live)

    def take_all(self) -> list[Job[Any]]:
        """Empty the queue; return its live jobs in order."""
        jobs = self.jobs()
        self.clear()
        self.live = 0
        return jobs

    def jobs(self) -> list[Job[Any]]:
        """The live jobs in order (for the invariant check)."""
        return [job for job in self if job.state is QUEUED]
