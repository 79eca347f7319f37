"""Per-key limits: how many jobs of each key are in the pool, and those set aside.

A key counts its jobs queued, handed over or running (at most ``limit``);
a job of a saturated key is set aside, in order, until one of its key's
jobs ends. A key with neither leaves no entry behind. The core decides when
a job is claimed, set aside or released; `KeyBooks` keeps the counts and
returns the job that takes a freed place; how many are set aside in all is
the queue's ``held`` (they count against the capacity), kept by the core.
"""

# The job record's fields belong to the core; Job is its public face.
# pyright: reportPrivateUsage=false

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Hashable

    from ._job import Job


class KeyBooks:
    """The per-key counts and the jobs waiting for their key."""

    __slots__ = ("_active", "_waiting", "limit")

    limit: int
    """The most jobs of one key queued or running at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._active: dict[Hashable, int] = {}
        self._waiting: dict[Hashable, deque[Job[Any]]] = {}

    def saturated(self, key: Hashable) -> bool:
        """Whether a job of ``key`` must wait aside (None: no key, never)."""
        return key is not None and self._active.get(key, 0) >= self.limit

    def claim(self, key: Hashable) -> bool:
        """Count one more job of ``key`` if the key has room; False if not."""
        if key is None:
            return True
        active = self._active.get(key, 0)
        if active >= self.limit:
            return False
        self._active[key] = active + 1
        return True

    def hold(self, job: Job[Any]) -> None:
        """Set ``job`` (of a saturated key) aside until one of its key's ends."""
        waiting = self._waiting.get(job._key)
        if waiting is None:
            waiting = self._waiting[job._key] = deque()
        waiting.append(job)

    def release(self, key: Hashable) -> Job[Any] | None:
        """A job of ``key`` ended or left: return the key's next job set aside,
        which takes its place (the count stays), or None (the count drops)."""
        waiting = self._waiting.get(key)
        if waiting is not None:
            job = waiting.popleft()
            if not waiting:
                del self._waiting[key]
            return job
        active = self._active[key] - 1
        if active:
            self._active[key] = active
        else:
            del self._active[key]  # an idle key leaves nothing behind
        return None

    def withdraw(self, job: Job[Any]) -> None:
        """A job set aside was cancelled."""
        waiting = self._waiting[job._key]
        waiting.remove(job)
        if not waiting:
            del self._waiting[job._key]

    def take_all_held(self) -> list[Job[Any]]:
        """Empty the jobs set aside; return them."""
        jobs = [job for waiting in self._waiting.values() for job in waiting]
        self._waiting.clear()
        return jobs

    def waiting_before(self, job: Job[Any]) -> int:
        """Jobs of ``job``'s key set aside now that start before it."""
        waiting = self._waiting.get(job._key)
        return 0 if waiting is None else len(waiting)

    def active_keys(self) -> int:
        """Keys with jobs queued, handed over or running."""
        return len(self._active)

    def snapshot(self) -> tuple[dict[Hashable, int], dict[Hashable, list[Job[Any]]]]:
        """Copies of the counts and of the jobs set aside, per key."""
        return dict(self._active), {k: list(v) for k, v in self._waiting.items()}
