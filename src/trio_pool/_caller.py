"""Who may call a pool: the Trio run and thread it belongs to, and its own jobs.

`RunGuard` refuses a call from another thread or another Trio run before
anything changes. `runs_inside` tells whether the calling task is one of a
set of tasks or was started, through nurseries, by one of them: the pool
asks it of its worker tasks to learn whether the caller is inside one of
its own jobs (where waiting on the pool could wait for itself). It follows
the tasks themselves, not a context variable, so a task that a job starts in
a nursery outside the pool is not inside the job, and a job of a pool opened
inside another pool's job is inside both.
"""

from __future__ import annotations

from threading import get_ident
from typing import TYPE_CHECKING, final

from trio.lowlevel import TrioToken, current_task, current_trio_token

if TYPE_CHECKING:
    from collections.abc import Iterable

    from trio.lowlevel import Task


@final
class RunGuard:
    """The Trio run (and thread) a pool belongs to, once it has opened."""

    __slots__ = ("_pool_name", "_token", "live", "thread")

    thread: int
    """The thread of the run that opened the pool (-1 before it opened)."""
    live: bool
    """Whether the pool is open (its nursery is running)."""

    def __init__(self, pool_name: str) -> None:
        self._pool_name = pool_name
        self._token: TrioToken | None = None
        self.thread = -1
        self.live = False

    @property
    def opened(self) -> bool:
        """Whether the pool has been opened (it may have exited since)."""
        return self._token is not None

    def open(self) -> None:
        """The pool opens in the current run and thread."""
        self._token = current_trio_token()
        self.thread = get_ident()
        self.live = True

    def check(self, what: str) -> None:
        """Refuse a call from another thread or another Trio run.

        While the pool is open, the only Trio run in its thread is its own
        (runs do not nest), so a thread check suffices; once it has exited,
        the run is checked too.

        Raises:
            RuntimeError: naming the right way to call ``what``.
        """
        if get_ident() != self.thread or not self.live:
            self.check_run(what)

    def check_run(self, what: str) -> None:
        """`check`'s slow part: the caller's Trio run (see `check`)."""
        try:
            token = current_trio_token()
        except RuntimeError:
            token = None
        if token is None or token is not self._token:
            raise RuntimeError(
                f"{what}() of pool {self._pool_name!r} was called from "
                f"{'outside any Trio run' if token is None else 'another Trio run'}"
                "; a pool belongs to the Trio run that opened it. From another "
                "thread, call it through that run, e.g. "
                "trio.from_thread.run_sync(pool.submit_nowait, fn, ...) or "
                "trio.from_thread.run(pool.submit, fn, ...)"
            )


def runs_inside(tasks: Iterable[Task | None]) -> bool:
    """Whether the current task is one of ``tasks``, or was started (through
    nurseries, at any depth) by one of them."""
    ancestors: set[Task] = set()
    task: Task | None = current_task()
    while task is not None:
        ancestors.add(task)
        nursery = task.parent_nursery
        task = None if nursery is None else nursery.parent_task
    return any(task in ancestors for task in tasks)
