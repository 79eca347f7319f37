"""The job handle, which is also the pool's record of the job, and its states.

One object per job serves both (a separate record would double the objects
the garbage collector walks for every job kept). Its documented members are
the handle's API; the other attributes are the job record's fields, private
(a leading underscore): they belong to the core, and only the modules that
keep the job's books read or write them, each saying so at its top (the
core's modules and the worker; the map reads outcomes from them, and
telemetry adds its own note, ``_span_context``).
"""

from __future__ import annotations

import enum
import math
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Protocol,
    TypeAlias,
    TypeVar,
    cast,
    final,
)

import outcome
from trio.lowlevel import (
    ParkingLot,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    enable_ki_protection,
)

from ._errors import JobCancelled, JobTimeout

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable
    from types import TracebackType

    from opentelemetry.context import Context

T = TypeVar("T")

Failure: TypeAlias = tuple[
    BaseException,
    "TracebackType | None",
    "BaseException | None",
    "BaseException | None",
    bool,
]
"""A failed job's error as it ended: the error, its traceback, context, cause
and suppress_context (one field, not five: a smaller record per job, which
the garbage collector walks for every job kept)."""


class JobOwner(Protocol):
    """What a job's handle needs of the pool that owns it (the core)."""

    def check_caller(self, what: str) -> None:
        """Refuse a call from another thread or Trio run."""
        ...

    def read_done(self, what: str) -> bool:
        """Refuse a call from another thread or Trio run; whether a call that
        did not wait takes a schedule point now."""
        ...

    def cancel(self, job: Job[Any]) -> None:
        """Cancel ``job``."""
        ...

    def retrieved(self, job: Job[Any]) -> None:
        """``job``'s failure was read."""
        ...

    @property
    def timings_shown(self) -> bool:
        """Whether the job's timings are public (``timings=True`` or shedding)."""
        ...


class JobState(enum.Enum):
    """Where a job is in its life. The last four are terminal."""

    QUEUED = "queued"
    """Accepted, waiting for a worker (in the queue, or handed to a worker
    that has not started it yet)."""
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


class Pending(enum.Enum):
    """The holder of a job that is not accepted yet."""

    NOT_ACCEPTED = "not accepted"
    """Its submitter still holds it (waiting for room, or about to offer it)."""
    WAITING_FOR_KEY = "waiting for its key"
    """Accepted, set aside until a job of its key ends (``per_key_limit``)."""


NOT_ACCEPTED = Pending.NOT_ACCEPTED
WAITING_FOR_KEY = Pending.WAITING_FOR_KEY

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
    and its handle resolves whatever happens to the pool. Its private
    attributes are the pool's record of the job, not part of the API.
    """

    # A pool with keys, timings or telemetry makes `FeaturedJob` records,
    # which add those features' fields: a plain pool's record is smaller
    # (the garbage collector walks it for every job kept).

    __slots__ = (
        "__weakref__",
        "_args",
        "_core",
        "_failure",
        "_fn",
        "_holder",
        "_label",
        "_lot",
        "_on_done",
        "_priority",
        "_t_finished",
        "_t_started",
        "_timeout",
        "_value",
        "state",
    )

    _core: JobOwner
    _fn: Callable[..., Awaitable[T]]
    _args: tuple[Any, ...]
    _label: str | None
    _timeout: float | None
    _on_done: Callable[[Job[Any]], None] | None
    state: JobState
    """The job's current `JobState`. Read it; only the pool changes it."""
    _holder: object  # a worker, a Pending marker, or None (see __init__)
    _key: Hashable  # (this, the span and the submit time: `FeaturedJob`'s)
    _lot: ParkingLot | None
    _value: T | None
    _failure: Failure | None
    _span_context: Context | None
    _priority: int
    _t_submitted: float
    _t_started: float
    _t_finished: float

    def __init__(
        self,
        core: JobOwner,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        name: str | None,
        timeout: float | None,
        on_done: Callable[[Job[Any]], None] | None,
    ) -> None:
        # Where the job is, at every instant, follows from ``state`` and
        # ``_holder``: QUEUED and NOT_ACCEPTED is still its submitter's
        # (waiting for room, perhaps); QUEUED and WAITING_FOR_KEY waits for
        # its key in the core's ``key_waiting``; QUEUED with no holder is in
        # the queue;
        # QUEUED with a worker was handed to that worker, which has not
        # started it; RUNNING runs in ``_holder``; any other state is resolved.
        # (`Intake.new_job` makes a plain pool's records with these same
        # stores, inlined: keep the two in step.)
        self._core = core
        self._fn = fn
        self._args = args
        self._label = name
        self._timeout = timeout
        self._on_done = on_done
        self.state = QUEUED
        self._holder = NOT_ACCEPTED
        self._lot = None  # created when someone waits
        # (Its worker keeps the cancel scope it runs in, and whether the
        # pool cancelled it: `Worker`.) Set when the job resolves: value,
        # failure (None, or the error with its traceback, context, cause and
        # suppress_context). Set by a pool with priorities: priority; by a
        # pool that records timings: t_started, t_finished, and, in a
        # `FeaturedJob`, t_submitted; by telemetry: span_context; by a pool
        # with per_key_limit: key. (Fewer stores per job.)

    def __repr__(self) -> str:
        return f"<trio_pool.Job {self.name!r} {self.state.value}>"

    @property
    def _error(self) -> BaseException | None:
        """The resolved job's error, or None (it succeeded)."""
        failure = self._failure
        return None if failure is None else failure[0]

    @property
    def name(self) -> str:
        """The name given at submit, or the function's qualified name."""
        if self._label is None:
            self._label = describe(self._fn)
        return self._label

    @property
    def done(self) -> bool:
        """Whether the job has reached a terminal state."""
        state = self.state
        return state is not QUEUED and state is not RUNNING

    @property
    def submitted_at(self) -> float | None:
        """When it was submitted, on Trio's clock (`trio.current_time`).

        The moment `Pool.submit` (or `Pool.submit_nowait`, `Pool.run`, or
        `Pool.map` for an item) was called, waiting for room included.
        Timings are shown by a pool opened with ``timings=True`` or
        ``shed=True`` (or from its first submit with ``shed=True``), whatever
        telemetry does (it keeps its own readings); in other pools this and
        the other timings are always ``None``.
        """
        return self._timing("_t_submitted")

    @property
    def started_at(self) -> float | None:
        """When a worker started it, or ``None`` until then (and if it never
        starts)."""
        return self._timing("_t_started")

    @property
    def finished_at(self) -> float | None:
        """When it reached its terminal state, or ``None`` until then."""
        return self._timing("_t_finished")

    def _timing(self, field: str) -> float | None:
        """One of the record's times, if the pool shows them, else None."""
        if not self._core.timings_shown:
            return None
        moment: float | None = getattr(self, field, None)
        return moment

    @property
    def wait_duration(self) -> float | None:
        """Seconds from submission to start; for a job cancelled before it
        started, to its cancellation. ``None`` until known."""
        submitted = self.submitted_at
        ended = self.started_at
        if ended is None:  # (0.0 is a time: MockClock starts there)
            ended = self.finished_at
        if submitted is None or ended is None:
            return None
        return ended - submitted

    @property
    def run_duration(self) -> float | None:
        """Seconds from start to finish; ``None`` until the job is done, and
        for a job that never started."""
        started = self.started_at
        finished = self.finished_at
        if started is None or finished is None:
            return None
        return finished - started

    def cancel(self) -> None:
        """Cancel the job.

        A queued job never starts; a running job is cancelled through its
        cancel scope, at its next checkpoint. Either way it ends
        `JobState.CANCELLED`. Cancelling a job that is already done does
        nothing. If a running job finishes before it reaches a checkpoint, its
        result stands. This method never blocks.

        Raises:
            RuntimeError: called from another thread or another Trio run.
        """
        self._core.cancel(self)

    async def wait(self) -> outcome.Outcome[T]:
        """Wait until the job is done and return its outcome without raising.

        It always checks for cancellation, and yields to the scheduler when
        it waits and otherwise once in 32 calls (see `Pool`). It may be
        called any number of times, from any number of tasks.

        Returns:
            `outcome.Value` with the return value, or `outcome.Error` with the
            job's exception, `JobTimeout` or `JobCancelled`.
        """
        await checkpoint_if_cancelled()  # `_wait_done`, inlined
        state = self.state
        core = self._core
        if state is QUEUED or state is RUNNING:
            await self._park("wait")
        else:
            if core.read_done("wait"):
                await cancel_shielded_checkpoint()
        return self._outcome()

    async def result(self) -> T:
        """Wait until the job is done and return its value.

        It always checks for cancellation, and yields to the scheduler when
        it waits and otherwise once in 32 calls (see `Pool`). It may be
        called any number of times.

        Raises:
            JobTimeout: the job ran past its time limit.
            JobCancelled: the job was cancelled.
            Exception: whatever the job raised, with its traceback.
        """
        await checkpoint_if_cancelled()  # `_wait_done`, inlined
        state = self.state
        core = self._core
        if state is QUEUED or state is RUNNING:
            await self._park("result")
        else:
            if core.read_done("result"):
                await cancel_shielded_checkpoint()
        if self._failure is None:
            return self._value  # type: ignore[return-value]
        return self._outcome().unwrap()

    async def _park(self, what: str) -> None:
        """Park until the job is resolved; the slow path of `wait`, `result`."""
        self._core.check_caller(what)
        lot = self._lot
        if lot is None:
            lot = self._lot = ParkingLot()
        await lot.park()

    async def _wait_done(self) -> None:
        """Wait until the job is resolved, without reading its outcome (a
        failure not read is still reported); a checkpoint."""
        await checkpoint_if_cancelled()
        if not self.done:
            await self._park("wait")
        elif self._core.read_done("wait"):
            await cancel_shielded_checkpoint()

    @enable_ki_protection
    def _listen(self, listener: Callable[[Job[Any]], None]) -> None:
        """Call ``listener(job)`` as the job resolves (it must not be done)."""
        current = self._on_done
        if current is None:
            self._on_done = listener
        elif isinstance(current, Listeners):
            current.append(listener)
        else:
            self._on_done = Listeners((current, listener))

    @enable_ki_protection
    def _unlisten(self, listener: Callable[[Job[Any]], None]) -> None:
        """Undo one `_listen` (nothing if the job is done: it has been called)."""
        current = self._on_done
        if current == listener:  # == : bound methods are made anew each time
            self._on_done = None
        elif isinstance(current, Listeners) and listener in current:
            current.remove(listener)
            if len(current) < 2:  # back to what one listener, or none, looks like
                self._on_done = current[0] if current else None

    def _outcome(self) -> outcome.Outcome[T]:
        """The resolved job's outcome, its error as it was when the job ended.

        Every reader gets the error with the traceback, ``__context__`` and
        ``__cause__`` it had when the job ended, whatever an earlier reader's
        ``raise`` added to the shared exception object.
        """
        failure = self._failure
        if failure is None:
            return outcome.Value(self._value)  # type: ignore[arg-type]
        self._core.retrieved(self)  # (each read: the registry forgets it once)
        error = failure[0]
        (
            _,
            error.__traceback__,
            error.__context__,
            error.__cause__,
            error.__suppress_context__,
        ) = failure
        return outcome.Error(error)

    def _timeout_error(self) -> JobTimeout:
        """The error a timed-out job resolves with."""
        timeout = self._timeout if self._timeout is not None else math.inf
        return JobTimeout(f"job {self.name!r} ran past its time limit of {timeout}s")

    def _cancelled_error(self) -> JobCancelled:
        """The error a cancelled job resolves with."""
        return JobCancelled(f"job {self.name!r} was cancelled")


new_record = cast("Callable[[type[Job[Any]]], Job[Any]]", object.__new__)
"""With `init_record`, makes a plain `Job` as ``Job(...)`` does, in two
plain calls (the hot paths: calling the class costs a C call into
``__init__``): ``job = new_record(Job); init_record(job, ...)``."""
init_record = cast(
    "Callable[[Job[Any], JobOwner, Callable[..., Awaitable[Any]], tuple[Any, ...], str | None, float | None, Callable[[Job[Any]], None] | None], None]",  # noqa: E501
    Job.__init__,  # pyright: ignore[reportUnknownMemberType]
)


@final
class FeaturedJob(Job[T]):  # type: ignore[misc]  # (`Job` is final to users)
    """The record of a job of a pool with keys, timings or telemetry: a
    `Job` with those features' fields. (A plain pool begins to record
    timings at its first ``shed=True``: the plain `Job` records it holds
    then show no submit time, as before.)"""

    __slots__ = ("_key", "_span_context", "_t_submitted")


@final
class Listeners(list["Callable[[Job[Any]], None]"]):
    """Several callbacks of one job, called in order (see `Job._listen`)."""

    def __call__(self, job: Job[Any]) -> None:
        for listener in self:
            listener(job)
