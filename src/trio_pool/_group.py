"""`Pool.group`: a nursery-shaped scope over a shared pool.

A `JobGroup` keeps the jobs submitted through it and nothing else: each of
its jobs gets the group's listener when it is made (before the pool accepts
it, so no completion is missed), and the pool's transitions know nothing of
groups. A pool that never opens a group pays nothing for them.

Leaving the block waits for the group's jobs only. With ``fail_fast``, the
first job that fails cancels the group's other jobs and the body (through a
cancel scope the block opens around it, as a nursery's), from within the
core's transition that resolved the failed job: each cancellation is a
transition of its own, and the failed job's books are complete by then.
"""

# The group listens on its jobs and marks their span's parent through the job record.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import itertools
import sys
from typing import TYPE_CHECKING, Any, TypeVar, final

import outcome
import trio
from trio.lowlevel import (
    ParkingLot,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    enable_ki_protection,
)

from ._checks import USE_POOL_DEFAULT, UsePoolDefault, check_bool
from ._errors import JobCancelled
from ._exits import exit_error, wait_through_interrupts
from ._job import FAILED, NOT_ACCEPTED, TIMED_OUT, Job
from ._state import YIELD_DUE
from ._variants import set_priority

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable
    from types import TracebackType

    from typing_extensions import TypeVarTuple, Unpack

    from ._core import PoolCore

    PosArgT = TypeVarTuple("PosArgT")

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

T = TypeVar("T")

_group_numbers = itertools.count(1)


async def accept(
    core: PoolCore, job: Job[Any], key: Hashable, shed: bool | None
) -> None:
    """Accept a job made by `PoolCore.new_job`, waiting for room as
    `Pool.submit` does (which inlines it)."""
    await checkpoint_if_cancelled()
    if core.shed if shed is None else check_bool("shed", shed):
        core.shed_by_deadline(job)
    accepted = core.offer(job, True) if key is None else core.offer_keyed(job, True)
    if accepted:
        if accepted == YIELD_DUE:
            await cancel_shielded_checkpoint()
    else:
        await core.wait_to_accept(job)


def accept_nowait(
    core: PoolCore, job: Job[Any], key: Hashable, shed: bool | None
) -> None:
    """Accept a job made by `PoolCore.new_job` if there is room now, as
    `Pool.submit_nowait` does (which inlines it)."""
    if core.shed if shed is None else check_bool("shed", shed):
        core.shed_by_deadline(job)
    if not (core.offer(job) if key is None else core.offer_keyed(job)):
        raise core.overloaded("right now")


def group_exit_error(
    body_error: BaseException | None,
    failures: list[BaseException],
    *,
    failing: bool,
    name: str,
) -> BaseException | None:
    """What leaving a group's block raises (None: nothing).

    The body's own exception comes out by the one exit policy (`exit_error`:
    as itself, an outside cancellation included; a group has no tasks of its
    own to add to it), and the group's failures are then left to the pool, which
    warns of those nobody read. Once a fail-fast group is failing, a
    `JobCancelled` in the body is the group's doing (it read a job the
    group cancelled): the failures come out instead, as they do when the
    body ended normally.
    """
    if body_error is not None and not (
        failing and isinstance(body_error, JobCancelled)
    ):
        return exit_error(body_error, (), block=f"group {name!r}")
    if failures:
        count = len(failures)
        return BaseExceptionGroup(
            f"{count} job{'s' if count > 1 else ''} of group {name!r} failed",
            failures,
        )
    return body_error


@final
class JobGroup:
    """The jobs one block submits to a shared pool, waited for as one.

    Made by `Pool.group`: ``async with pool.group() as group:``. Its
    `submit`, `submit_nowait` and `run` take the pool's arguments, share
    the pool's workers, queue and limits with every other caller, and return
    the same `Job` handles. Leaving the block waits for every job of the
    group, and only those: a request handler waits for its own fan-out, not
    for other requests' jobs. No job of the group outlives its block; a
    submit to the group after the block ended raises `RuntimeError`.

    With ``fail_fast`` (the default), the first job of the group that fails
    (raises, or runs past its time limit) cancels the group's other jobs,
    queued and running, and the body (as a nursery cancels its body), and
    leaving the block raises the failures as an `ExceptionGroup`, as a
    strict Trio nursery does. Without it, every job runs and the failures
    come out together at the end. A job cancelled (by `Job.cancel` or by the
    pool) is no failure.

    If the body raises, or the surrounding scope is cancelled (or a Ctrl-C
    comes) while the body runs or the block waits, the group's jobs are
    cancelled and waited for, and the exception comes out as itself (the
    failures of the group's jobs are then left unread, and the pool warns
    of them as of any job's). Once a fail-fast group is failing,
    a `JobCancelled` the body raises (from a job the group cancelled) gives
    way to the failures.
    """

    def __init__(
        self, core: PoolCore, block: GroupBlock, *, fail_fast: bool, name: str
    ) -> None:
        self._core = core
        self._fail_fast = fail_fast
        self._name = name
        self._pending: set[Job[Any]] = set()  # made here, not done yet
        self._submitting = 0  # of those, jobs whose submit is not over yet
        self._failed: list[Job[Any]] = []  # failed or timed out, in order
        self._open = False  # from entering the block to the end of its exit
        self._cancelling = False  # its jobs are cancelled as they come
        self._lot = ParkingLot()  # the block's exit, waiting for the jobs
        self._scope = trio.CancelScope()  # around the body
        self._listener = self._done
        self._span: Any = None  # the group's span, with active tracing
        self._context: Any = None  # its jobs' parent context
        block.hold(self, self._enter, self._exit)

    def __repr__(self) -> str:
        return (
            f"<trio_pool.JobGroup {self._name!r} of pool {self._core.name!r}: "
            f"{len(self._pending)} jobs pending>"
        )

    @property
    def name(self) -> str:
        """The group's name, as its span shows it."""
        return self._name

    @property
    def fail_fast(self) -> bool:
        """Whether the first failure cancels the group's other jobs."""
        return self._fail_fast

    # ---------------------------------------------------------------- submit

    async def submit(
        self,
        fn: Callable[[Unpack[PosArgT]], Awaitable[T]],
        *args: Unpack[PosArgT],
        name: str | None = None,
        timeout: float | UsePoolDefault | None = USE_POOL_DEFAULT,
        key: Hashable = None,
        shed: bool | None = None,
        priority: int = 0,
    ) -> Job[T]:
        """`Pool.submit`, for a job of this group.

        Raises:
            RuntimeError: the group's block has ended (or another thread or
                Trio run called).
            PoolOverloaded, PoolClosed, TypeError, ValueError: as
                `Pool.submit`.
        """
        job = self._new_job("submit", fn, args, name, timeout, key, priority)
        try:
            await accept(self._core, job, key, shed)
        except BaseException:
            self._forget(job)
            raise
        self._accepted(job)
        return job

    def submit_nowait(
        self,
        fn: Callable[[Unpack[PosArgT]], Awaitable[T]],
        *args: Unpack[PosArgT],
        name: str | None = None,
        timeout: float | UsePoolDefault | None = USE_POOL_DEFAULT,
        key: Hashable = None,
        shed: bool | None = None,
        priority: int = 0,
    ) -> Job[T]:
        """`Pool.submit_nowait`, for a job of this group.

        Raises:
            RuntimeError: the group's block has ended (or another thread or
                Trio run called).
            PoolOverloaded, PoolClosed, TypeError, ValueError: as
                `Pool.submit_nowait`.
        """
        job = self._new_job("submit_nowait", fn, args, name, timeout, key, priority)
        try:
            accept_nowait(self._core, job, key, shed)
        except BaseException:
            self._forget(job)
            raise
        self._accepted(job)
        return job

    async def run(
        self,
        fn: Callable[[Unpack[PosArgT]], Awaitable[T]],
        *args: Unpack[PosArgT],
        name: str | None = None,
        timeout: float | UsePoolDefault | None = USE_POOL_DEFAULT,
        key: Hashable = None,
        shed: bool | None = None,
        priority: int = 0,
    ) -> T:
        """`Pool.run`, for a job of this group: submit, wait, return its value.

        If the caller is cancelled (or interrupted, by Ctrl-C) while it waits,
        the job is cancelled too.

        Raises:
            Exception: whatever the job raised, `JobTimeout`, `JobCancelled`,
                or what `submit` raises.
        """
        job = await self.submit(
            fn, *args, name=name, timeout=timeout, key=key, shed=shed, priority=priority
        )
        try:
            return await job.result()
        except BaseException:  # cancelled or interrupted: its job goes too
            job.cancel()
            raise

    def _new_job(
        self,
        method: str,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        name: str | None,
        timeout: float | UsePoolDefault | None,
        key: Hashable,
        priority: int,
    ) -> Job[Any]:
        """Make a job of the group (the pool's checks first); not accepted yet."""
        core = self._core
        job = core.new_job(method, fn, args, name, timeout, key)
        if priority.__class__ is not int or priority:
            set_priority(core, job, priority)
        if not self._open:
            raise RuntimeError(
                f"group {self._name!r} has ended: {method}() works inside its "
                "'async with pool.group() as group:' block only"
            )
        if self._context is not None:
            job._span_context = self._context  # type: ignore[misc]  # its parent
        job._listen(self._listener)
        self._pending.add(job)
        self._submitting += 1
        return job

    def _forget(self, job: Job[Any]) -> None:
        """A job of the group was refused (or its submit cancelled)."""
        self._submitting -= 1
        if job._holder is not NOT_ACCEPTED or job.done:  # pragma: no cover
            return  # (accepted after all: it resolves as any other)
        self._pending.discard(job)
        if not self._waited_for():
            self._lot.unpark_all()

    def _accepted(self, job: Job[Any]) -> None:
        """A job of the group was accepted: a cancelling group cancels it."""
        self._submitting -= 1
        if self._cancelling:
            job.cancel()

    def _waited_for(self) -> int:
        """How many jobs the block's exit still waits for: every job not
        done; once the group cancels its jobs, not those whose submit still
        waits for room (another task's: accepted, they are cancelled at
        once)."""
        pending = len(self._pending)
        return pending - self._submitting if self._cancelling else pending

    # -------------------------------------------------------------- the jobs

    def _done(self, job: Job[Any]) -> None:
        """Called by the core as a job of the group resolves."""
        self._pending.discard(job)
        state = job.state
        if state is FAILED or state is TIMED_OUT:
            self._failed.append(job)
            if self._fail_fast and not self._cancelling:
                self._cancel_all()
                self._scope.cancel()
        if not self._waited_for():
            self._lot.unpark_all()

    def _cancel_all(self) -> None:
        """Cancel every job of the group, and those accepted from now on."""
        self._cancelling = True
        for job in list(self._pending):  # (a queued one resolves at once)
            job.cancel()

    async def _wait(self) -> None:
        """Wait until every job of the group is done; a checkpoint."""
        if not self._waited_for():
            await checkpoint()  # (a job may be submitted meanwhile)
        while self._waited_for():
            await self._lot.park()

    async def _wait_cancelled(self) -> list[BaseException]:
        """Wait, shielded, until the group's jobs (cancelled) are done; a
        Ctrl-C meanwhile does not end the wait: return what interrupted it."""
        interrupts: list[BaseException] = []
        with trio.CancelScope(shield=True):
            await wait_through_interrupts(self._wait, interrupts)
        return interrupts

    # ------------------------------------------------------------ the block

    def _enter(self) -> None:
        self._open = True
        telemetry = self._core.telemetry
        if telemetry is not None:
            opened = telemetry.group_started(self._name)
            if opened is not None:
                self._span, self._context = opened
        self._scope.__enter__()

    async def _exit(self, exc: BaseException | None) -> bool:
        """Leave the block: wait for the jobs; return True to swallow ``exc``."""
        body_error = exc
        try:
            if self._scope.__exit__(type(exc) if exc else None, exc, None):
                body_error = None  # the group's own cancellation of the body
        except BaseException as rest:  # (a group, less the group's Cancelled)
            body_error = rest
        if body_error is not None:
            self._cancel_all()
        else:
            try:
                await self._wait()
            except BaseException as interrupted:  # a cancellation from outside
                body_error = interrupted  # or a Ctrl-C, while waiting
                self._cancel_all()
        if body_error is not None:
            interrupts = await self._wait_cancelled()
            if interrupts:  # (as in a Trio nursery: after the jobs, as itself)
                body_error = exit_error(
                    body_error, interrupts, block=f"group {self._name!r}"
                )
        self._open = False
        failing = self._fail_fast and bool(self._failed)
        error = group_exit_error(
            body_error,
            self._failures_if_raised(body_error),
            failing=failing,
            name=self._name,
        )
        self._end_span(error)
        if error is None:
            return exc is not None  # (the body's Cancelled was the group's)
        if error is exc:
            return False  # goes on as itself
        raise error

    def _failures_if_raised(
        self, body_error: BaseException | None
    ) -> list[BaseException]:
        """The failures, read (so the pool does not warn of them) when the
        block raises them; none when the body's own exception wins."""
        if body_error is not None and not (
            self._fail_fast and isinstance(body_error, JobCancelled)
        ):
            return []
        failures: list[BaseException] = []
        for job in self._failed:
            result = job._outcome()
            assert isinstance(result, outcome.Error)
            failures.append(result.error)
        return failures

    def _end_span(self, error: BaseException | None) -> None:
        telemetry = self._core.telemetry
        if self._span is not None and telemetry is not None:
            telemetry.group_ended(self._span, len(self._failed), error)
            self._span = self._context = None


@final
class GroupBlock:
    """The async context manager `Pool.group` returns."""

    __slots__ = ("_core", "_enter", "_entered", "_group", "_leave")

    _group: JobGroup
    _enter: Callable[[], None]
    _leave: Callable[[BaseException | None], Awaitable[bool]]

    def __init__(self, core: PoolCore) -> None:
        self._core = core
        self._entered = False

    def hold(
        self,
        group: JobGroup,
        enter: Callable[[], None],
        leave: Callable[[BaseException | None], Awaitable[bool]],
    ) -> None:
        """Be ``group``'s block, which ``enter`` opens and ``leave`` closes
        (the group's own, given as it is made)."""
        self._group = group
        self._enter = enter
        self._leave = leave

    @enable_ki_protection
    async def __aenter__(self) -> JobGroup:
        if self._entered:
            raise RuntimeError("a pool.group() can be entered only once")
        self._entered = True
        self._core.check_caller("group")
        await checkpoint()
        self._enter()
        return self._group

    @enable_ki_protection
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        return await self._leave(exc)


def open_group(core: PoolCore, *, fail_fast: bool, name: str | None) -> GroupBlock:
    """The block of a new group of ``core``'s pool's jobs."""
    block = GroupBlock(core)
    name = name or f"group-{next(_group_numbers)}"
    JobGroup(core, block, fail_fast=fail_fast, name=name)  # (gives the block its ends)
    return block
