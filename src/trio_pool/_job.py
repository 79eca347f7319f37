"""The job handle: what `Pool.submit` returns, and the states a job goes through."""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import outcome
from trio.lowlevel import (
    Abort,
    Task,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    current_task,
    reschedule,
    wait_task_rescheduled,
)

from ._errors import JobCancelled, JobTimeout

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import TracebackType

    import trio

    from ._pool import Pool

T = TypeVar("T")


class JobState(enum.Enum):
    """Where a job is in its life. The last four are terminal."""

    QUEUED = "queued"
    """Accepted, waiting for a worker."""
    RUNNING = "running"
    """A worker is running it."""
    SUCCEEDED = "succeeded"
    """It returned a value."""
    FAILED = "failed"
    """It raised an exception."""
    TIMED_OUT = "timed_out"
    """It ran past its time limit and was cancelled."""
    CANCELLED = "cancelled"
    """It was cancelled (by `Job.cancel`, by shutdown, or from outside the pool)."""


QUEUED = JobState.QUEUED
RUNNING = JobState.RUNNING
SUCCEEDED = JobState.SUCCEEDED
FAILED = JobState.FAILED
TIMED_OUT = JobState.TIMED_OUT
CANCELLED = JobState.CANCELLED


def describe(fn: object) -> str:
    """Return a readable name for a callable: its qualified name, or its repr."""
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        return name
    inner = getattr(fn, "func", None)  # functools.partial
    if inner is not None:
        return describe(inner)
    return repr(fn)


@final
class Job(Generic[T]):
    """A handle on one submitted job.

    Jobs are created by `Pool.submit`, `Pool.submit_nowait` and `Pool.run`;
    you never create one yourself. A job ends in exactly one terminal state,
    and its handle resolves whatever happens to the pool.
    """

    __slots__ = (
        "__weakref__",
        "_args",
        "_cancel_requested",
        "_error",
        "_fn",
        "_in_queue",
        "_name",
        "_on_done",
        "_pool",
        "_scope",
        "_span_context",
        "_started_at",
        "_state",
        "_submitted_at",
        "_timeout",
        "_traceback",
        "_value",
        "_waiters",
    )

    _value: T | None
    _error: BaseException | None
    _traceback: TracebackType | None
    _span_context: object
    _submitted_at: float
    _started_at: float

    def __init__(
        self,
        pool: Pool,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        name: str | None,
        timeout: float | None,
    ) -> None:
        self._pool = pool
        self._fn = fn
        self._args = args
        self._name = name
        self._timeout = timeout
        self._state = QUEUED
        self._in_queue = False
        self._cancel_requested = False
        self._scope: trio.CancelScope | None = None
        self._waiters: list[Task] | None = None
        self._on_done: Callable[[Job[T]], None] | None = None
        # Set when the job resolves: _value, _error, _traceback. Set by the
        # telemetry, which alone reads them: _span_context, _submitted_at,
        # _started_at. (Fewer stores per job.)

    def __repr__(self) -> str:
        return f"<trio_pool.Job {self.name!r} {self._state.value}>"

    @property
    def name(self) -> str:
        """The name given at submit, or the function's qualified name."""
        if self._name is None:
            self._name = describe(self._fn)
        return self._name

    @property
    def state(self) -> JobState:
        """The job's current `JobState`."""
        return self._state

    @property
    def done(self) -> bool:
        """Whether the job has reached a terminal state."""
        state = self._state
        return state is not QUEUED and state is not RUNNING

    def cancel(self) -> None:
        """Cancel the job.

        A queued job never starts; a running job is cancelled through its
        cancel scope, at its next checkpoint. Either way it ends
        `JobState.CANCELLED`. Cancelling a job that is already done does
        nothing. If a running job finishes before it reaches a checkpoint, its
        result stands. This method never blocks.
        """
        state = self._state
        if state is QUEUED:
            self._pool._cancel_queued(self)
        elif state is RUNNING:
            self._cancel_requested = True
            if self._scope is not None:
                self._scope.cancel()

    async def wait(self) -> outcome.Outcome[T]:
        """Wait until the job is done and return its outcome without raising.

        This is a checkpoint (see `Pool` for the schedule-point rule). It may
        be called any number of times, from any number of tasks.

        Returns:
            `outcome.Value` with the return value, or `outcome.Error` with the
            job's exception, `JobTimeout` or `JobCancelled`.
        """
        await self._wait_done()
        error = self._error
        if error is None:
            return outcome.Value(self._value)  # type: ignore[arg-type]
        error.__traceback__ = self._traceback
        return outcome.Error(error)

    async def result(self) -> T:
        """Wait until the job is done and return its value.

        This is a checkpoint. It may be called any number of times.

        Raises:
            JobTimeout: the job ran past its time limit.
            JobCancelled: the job was cancelled.
            Exception: whatever the job raised, with its traceback.
        """
        await self._wait_done()
        error = self._error
        if error is None:
            return self._value  # type: ignore[return-value]
        raise error.with_traceback(self._traceback)

    async def _wait_done(self) -> None:
        await checkpoint_if_cancelled()
        state = self._state
        if state is QUEUED or state is RUNNING:
            task = current_task()
            waiters = self._waiters
            if waiters is None:
                waiters = self._waiters = []
            waiters.append(task)

            def abort(_: object) -> Abort:
                waiters.remove(task)
                return Abort.SUCCEEDED

            await wait_task_rescheduled(abort)
        elif self._pool._yield_due():  # done: a schedule point now and then
            await cancel_shielded_checkpoint()

    def _resolve(
        self,
        state: JobState,
        value: T | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Move to a terminal state and wake every task waiting on the job."""
        self._state = state
        self._value = value
        self._error = error
        self._traceback = None if error is None else error.__traceback__
        self._scope = None
        self._args = ()  # let the arguments go; the function stays for `name`
        waiters = self._waiters
        if waiters:
            for task in waiters:
                reschedule(task)
            waiters.clear()
        if self._on_done is not None:
            self._on_done(self)

    def _timeout_error(self) -> JobTimeout:
        timeout = self._timeout if self._timeout is not None else math.inf
        return JobTimeout(f"job {self.name!r} ran past its time limit of {timeout}s")

    def _cancelled_error(self) -> JobCancelled:
        return JobCancelled(f"job {self.name!r} was cancelled")
