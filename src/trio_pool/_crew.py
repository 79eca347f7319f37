"""The pool's workers: which are alive, which are idle, which were woken.

`Crew` keeps the records of the worker tasks and the hand-over of a job to
an idle one. It changes only its own books and wakes the tasks it is told
to wake; which worker gets which job, and when, is the core's decision.
"""

# The job record's fields belong to the core; Job is its public face.
# pyright: reportPrivateUsage=false

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

import trio
from trio.lowlevel import Task, reschedule

if TYPE_CHECKING:
    from ._job import Job
    from ._telemetry import JobSpan


@final
class Worker:
    """The record of one worker task; only `Crew` writes its fields."""

    __slots__ = ("job", "retired", "scope", "scope_cancelled", "span", "task", "woken")

    task: Task | None
    """The worker's task, once it has run."""
    job: Job[Any] | None
    """The job handed over to it, or running in it."""
    scope: trio.CancelScope | None
    """The cancel scope its jobs run in (the worker loop's; a cancelled one
    is replaced before the next job starts)."""
    scope_cancelled: bool
    """Whether the core cancelled ``scope`` (`Job.cancel`, shutdown): its
    job ends `CANCELLED`, not `TIMED_OUT`, and the scope is not reused."""
    span: JobSpan | None
    """The running job's span, if it is traced (telemetry's note)."""
    woken: bool
    """Rescheduled with a job (or to stop), and has not run since."""
    retired: bool
    """Told to stop; no longer among the crew's workers."""

    def __init__(self) -> None:
        self.task = None
        self.job = None
        self.scope = None
        self.scope_cancelled = False
        self.span = None
        self.woken = False
        self.retired = False


@final
class Crew:
    """The live workers, the idle ones among them, and those on their way."""

    __slots__ = (
        "_all_started",
        "_most",
        "handed",
        "idle",
        "starting",
        "surplus",
        "waking",
        "workers",
    )

    workers: set[Worker]
    """Every live worker (not retired), busy or idle."""
    idle: list[Worker]
    """Workers parked without a job, the longest idle first."""
    waking: int
    """Workers woken with a job that have not run yet."""
    starting: int
    """Workers started whose task has not run yet."""
    handed: int
    """Jobs handed over to a woken worker that has not run yet (they start
    when it runs; `Pool.statistics` counts them as running)."""
    surplus: bool
    """Whether there may be more live workers than the pool's maximum: set
    by `retire_surplus` (a resize: the only change that lowers the maximum;
    the pool grows only below it), cleared as workers stop. False: there
    are not (the workers' common step reads it rather than count them)."""

    def __init__(self) -> None:
        self.workers = set()
        self.idle = []
        self.waking = 0
        self.starting = 0
        self.handed = 0
        self.surplus = False
        self._most = 0  # the maximum `retire_surplus` was given
        self._all_started: trio.Event | None = None

    def __len__(self) -> int:
        return len(self.workers)

    def watch_start(self) -> trio.Event:
        """An event set once every worker started so far has run."""
        event = self._all_started = trio.Event()
        if not self.starting:
            event.set()
        return event

    def add(self) -> Worker:
        """The record of a worker about to be started."""
        worker = Worker()
        self.starting += 1
        self.workers.add(worker)
        return worker

    def began(self, worker: Worker, task: Task) -> None:
        """``worker``'s task runs for the first time."""
        worker.task = task
        self.starting -= 1
        if not self.starting and self._all_started is not None:
            self._all_started.set()
            self._all_started = None

    def remove(self, worker: Worker) -> None:
        """``worker`` stops: it is no longer counted."""
        self.workers.discard(worker)
        worker.retired = True
        if self.surplus:
            self.surplus = len(self.workers) > self._most

    def rest(self, worker: Worker) -> None:
        """``worker`` parks among the idle ones."""
        self.idle.append(worker)

    def unrest(self, worker: Worker) -> None:
        """A parked idle worker was cancelled or timed out."""
        self.idle.remove(worker)

    def hand_over(self, job: Job[Any]) -> Worker:
        """Wake the most recently idle worker with ``job`` as its next one,
        which now holds it."""
        worker = self.idle.pop()
        self.waking += 1
        worker.woken = True
        worker.job = job
        self.handed += 1
        job._holder = worker
        reschedule(worker.task)  # type: ignore[arg-type]  # (`_wake`, inlined)
        return worker

    def woke(self, worker: Worker) -> Job[Any] | None:
        """``worker`` runs after it was woken: the job it was handed, if any."""
        job = worker.job
        if worker.woken:
            worker.woken = False
            self.waking -= 1
            if job is not None:
                self.handed -= 1
        return job

    def unhand(self, worker: Worker) -> None:
        """The job handed to ``worker`` will not start (it was cancelled)."""
        worker.job = None
        self.handed -= 1

    def hold(
        self, worker: Worker, job: Job[Any] | None, span: JobSpan | None = None
    ) -> None:
        """``worker`` now holds ``job`` (None: nothing)."""
        worker.job = job
        worker.span = span

    def release_idle(self) -> None:
        """Wake every idle worker with nothing to do, so that it stops."""
        idle = self.idle
        while idle:
            worker = idle.pop()
            self.remove(worker)
            _wake(worker)

    def retire_surplus(self, most: int) -> None:
        """Stop the longest idle workers while there are more than ``most``."""
        idle = self.idle
        while len(self.workers) > most and idle:
            worker = idle.pop(0)
            self.remove(worker)
            _wake(worker)
        self._most = most
        self.surplus = len(self.workers) > most

    def wake_idle(self, most: int) -> None:
        """Wake the ``most`` longest idle workers (at most), to park again
        (with an idle timer); the others stay idle, ready for a job."""
        woken = self.idle[:most]
        del self.idle[:most]
        for worker in woken:
            _wake(worker)

    def exited(self, worker: Worker) -> Job[Any] | None:
        """``worker``'s task ends, however it ends; return the job it held."""
        self.remove(worker)
        if worker in self.idle:
            self.idle.remove(worker)
        job = worker.job
        if worker.woken:
            worker.woken = False
            self.waking -= 1
            if job is not None:
                self.handed -= 1
        worker.job = None
        return job


def _wake(worker: Worker) -> None:
    """Reschedule a parked worker (one that parked has run: it has a task)."""
    assert worker.task is not None
    reschedule(worker.task)
