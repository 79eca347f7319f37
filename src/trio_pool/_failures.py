"""Failed jobs whose outcome nobody has read yet.

A WARNING goes out when such a job's handle is dropped, or when the pool
stops, so that a failure is never lost in silence.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, final

from ._log import WARNING, log

if TYPE_CHECKING:
    from ._job import Job


@final
class Unretrieved:
    """The registry of one pool's failures that nobody retrieved."""

    __slots__ = ("_failures", "_pool_name")

    def __init__(self, pool_name: str) -> None:
        self._pool_name = pool_name
        self._failures: dict[
            weakref.ref[Job[Any]], tuple[str, BaseException | None]
        ] = {}

    def __len__(self) -> int:
        return len(self._failures)

    def add(self, job: Job[Any], error: BaseException) -> None:
        """``job`` failed with ``error``; nobody has read it yet."""
        self._failures[weakref.ref(job, self._dropped)] = (job.name, error)

    def retrieved(self, job: Job[Any]) -> None:
        """``job``'s outcome was read: no WARNING for it."""
        self._failures.pop(weakref.ref(job), None)

    def flush(self) -> None:
        """The pool stopped: warn of every failure left."""
        left = list(self._failures.values())
        self._failures.clear()
        for name, error in left:
            self._warn(name, error, "the pool stopped")

    def _dropped(self, ref: weakref.ref[Job[Any]]) -> None:
        """A failed job's handle was dropped (a weakref callback)."""
        found = self._failures.pop(ref, None)
        if found is not None:
            self._warn(*found, "its handle was dropped")

    def _warn(self, name: str, error: BaseException | None, when: str) -> None:
        log(
            WARNING,
            "job %r in pool %r failed, and nobody retrieved its outcome before %s",
            name,
            self._pool_name,
            when,
            exc_info=error,
        )
