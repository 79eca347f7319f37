"""The queue of accepted jobs waiting for a worker, with its tombstones.

A job cancelled while queued stays in the deque as a tombstone (removing it
from the middle would cost a pass over the queue); `JobQueue.pop` skips
tombstones, ``live`` counts only the jobs that will run, and the tombstones
are swept once they outnumber the live jobs. The core owns the queue: it
decides when a job goes in or comes out; the queue only keeps them in order.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, final

from ._job import QUEUED

if TYPE_CHECKING:
    from ._job import Job


@final
class JobQueue:
    """Accepted jobs in the order they start; cancelled ones are skipped."""

    __slots__ = ("_jobs", "live")

    live: int
    """Jobs in the queue that are still QUEUED (tombstones excluded)."""

    def __init__(self) -> None:
        self._jobs: deque[Job[Any]] = deque()
        self.live = 0

    def push(self, job: Job[Any]) -> None:
        """Queue ``job`` at the back."""
        self._jobs.append(job)
        self.live += 1

    def push_front(self, job: Job[Any]) -> None:
        """Put ``job`` back at the head (a worker gave it back unstarted)."""
        self._jobs.appendleft(job)
        self.live += 1

    def pop(self) -> Job[Any] | None:
        """Take the first live job, dropping the tombstones before it."""
        jobs = self._jobs
        while jobs:
            job = jobs.popleft()
            if job.state is QUEUED:
                self.live -= 1
                return job
        return None

    def withdraw(self) -> None:
        """One queued job was cancelled: it stays as a tombstone."""
        self.live -= 1
        if len(self._jobs) > 2 * self.live + 32:  # sweep the tombstones
            self._jobs = deque(job for job in self._jobs if job.state is QUEUED)

    def take_all(self) -> list[Job[Any]]:
        """Empty the queue; return its live jobs in order."""
        jobs = [job for job in self._jobs if job.state is QUEUED]
        self._jobs.clear()
        self.live = 0
        return jobs

    def jobs(self) -> list[Job[Any]]:
        """The live jobs in order (for the invariant check)."""
        return [job for job in self._jobs if job.state is QUEUED]

    def __len__(self) -> int:
        """Entries, tombstones included."""
        return len(self._jobs)
