"""Who may call a pool: the Trio run and thread it belongs to, and its own jobs.

`RunGuard` refuses a call from another thread or another Trio run before
anything changes. `runs_inside` tells whether the calling task is one of a
set of tasks or was started, through nurseries, by one of them: the pool
asks it of its worker tasks to learn whether the caller is inside one of
its own jobs (where waiting on the pool could wait for itself). It follows
the tasks themselves, not a context variable, so a task that a job starts in
a nursery outside the pool is not inside the job, and a job of a pool opened
inside another pool's job is inside both.

One kind of task is inside a job without descending from it: a system task
that `trio.from_thread.run` starts (given a ``trio_token``, or from a thread
that may be abandoned) for a thread the job started, and waits for. It
carries the context of the job's task (the thread's copy of it), so each
worker task marks its context once (`mark_worker`) and `called_back` reads
the marks, in a system task only: a task of the pool's own tree carrying
them was started by a job in a nursery outside the pool.
"""

from __future__ import annotations

from contextvars import ContextVar
from threading import get_ident
from typing import TYPE_CHECKING, final

from trio.lowlevel import TrioToken, current_root_task, current_task, current_trio_token

if TYPE_CHECKING:
    from collections.abc import Container, Iterable

    from trio.lowlevel import Task


@final
class RunGuard:
    """The Trio run (and thread) a pool belongs to, once it has opened."""

    __slots__ = ("_pool_name", "_token", "home", "live", "thread")

    thread: int
    """The thread of the run that opened the pool, while it is open (-1
    before it opened and after it exited): one comparison tells a caller in
    the pool's own open run."""
    live: bool
    """Whether the pool is open (its nursery is running)."""
    home: Task | None
    """The top task of the tree the pool opened in (`top_task`)."""

    def __init__(self, pool_name: str) -> None:
        self._pool_name = pool_name
        self._token: TrioToken | None = None
        self.thread = -1
        self.live = False
        self.home = None

    @property
    def opened(self) -> bool:
        """Whether the pool has been opened (it may have exited since)."""
        return self._token is not None

    def open(self) -> None:
        """The pool opens in the current run and thread."""
        self._token = current_trio_token()
        self.thread = get_ident()
        self.live = True
        self.home = top_task(current_task())

    def check(self, what: str) -> None:
        """Refuse a call from another thread or another Trio run.

        While the pool is open, the only Trio run in its thread is its own
        (runs do not nest), so a thread check suffices; once it has exited,
        the run is checked too.

        Raises:
            RuntimeError: naming the right way to call ``what``.
        """
        if get_ident() != self.thread:
            self.check_run(what)

    def exited(self) -> None:
        """The pool's nursery is gone: the run is checked from now on."""
        self.live = False
        self.thread = -1

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


_WORKER_MARKS: ContextVar[tuple[object, ...]] = ContextVar(
    "trio_pool_worker_marks", default=()
)
"""The workers (of every pool) whose task's context this context copies."""


def mark_worker(worker: object) -> None:
    """Mark the current task's context as ``worker``'s (once, as it begins)."""
    _WORKER_MARKS.set((*_WORKER_MARKS.get(), worker))


def called_back(workers: Container[object], home: Task | None) -> tuple[object, ...]:
    """The marks of ``workers`` in the current context, if the current task
    is outside the tree of ``home`` (a system task, such as the one
    `trio.from_thread.run` starts); else ()."""
    marks = _WORKER_MARKS.get()
    if not marks or top_task(current_task()) is home:
        return ()
    return tuple(mark for mark in marks if mark in workers)


def top_task(task: Task) -> Task:
    """The ancestor of ``task`` that the root task started: the main task,
    or a system task."""
    root = current_root_task()
    while True:
        nursery = task.parent_nursery
        if nursery is None or nursery.parent_task is root:
            return task
        task = nursery.parent_task
