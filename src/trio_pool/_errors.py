"""The exceptions trio_pool raises.

Each one subclasses :class:`PoolError` and, where there is one, the Trio
exception a Trio user would already catch for the same situation.
"""

from __future__ import annotations

import sys
from typing import Literal, TypeAlias

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

OverloadReason: TypeAlias = Literal["no_room", "submit_timeout", "own_job", "deadline"]
"""Why a submission was refused for want of room (`PoolOverloaded.reason`)."""


class PoolError(Exception):
    """Base class for every error raised by trio_pool."""


class PoolClosed(PoolError, trio.ClosedResourceError):
    """The pool no longer takes work: it was closed, shut down or has exited."""


class PoolOverloaded(PoolError, trio.WouldBlock):
    """There was no room in the queue, now or within ``submit_timeout``; or,
    with ``shed=True``, the job could not finish before the caller's deadline.

    It is a `trio.WouldBlock`, as the contract says, also when the blocking
    `Pool.submit` raises it; the one raised after ``submit_timeout`` is the
    subclass `SubmitTimeout`, also a `trio.TooSlowError`.

    Attributes:
        reason: why: ``"no_room"`` (`Pool.submit_nowait` found the queue
            full), ``"submit_timeout"`` (`Pool.submit` found no room within
            ``submit_timeout``: a `SubmitTimeout`), ``"own_job"`` (the queue
            was full for a submit inside one of the pool's own jobs, which
            never waits) or ``"deadline"`` (shed: the job could not finish
            before the caller's deadline).
    """

    reason: OverloadReason

    def __init__(self, message: str, reason: OverloadReason = "no_room") -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type[PoolOverloaded], tuple[str, OverloadReason]]:
        return (type(self), (str(self), self.reason))  # keeps the reason


class SubmitTimeout(PoolOverloaded, trio.TooSlowError):
    """`Pool.submit` found no room within the pool's ``submit_timeout``.

    A `PoolOverloaded` (``reason`` ``"submit_timeout"``) and a
    `trio.TooSlowError`, as `trio.fail_after` raises, so either ``except``
    catches it.
    """

    def __init__(self, message: str, reason: OverloadReason = "submit_timeout") -> None:
        super().__init__(message, reason)


class JobTimeout(PoolError, trio.TooSlowError):
    """The job ran past its time limit and was cancelled."""


class JobCancelled(PoolError):
    """The job was cancelled by :meth:`Job.cancel`, by shutdown or from outside."""


class PoolCrashed(PoolError):
    """What leaves a pool's ``async with`` (or a map's, or a stream
    consumer's) when more went wrong than the body's own exception.

    Raised when a job or one of the block's own tasks raised a
    `BaseException` that is not an `Exception` (other than
    `KeyboardInterrupt` and `SystemExit`, which come out as themselves), when
    several exceptions ended the block at once, or when the block failed on
    its own. Its ``__cause__`` is always a `BaseExceptionGroup` of everything
    that was raised, the body's exception first; its shape never depends on
    timing or on how many failed. See :doc:`errors`.
    """


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in ``group`` and in the groups nested in it, in order."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(leaves(exc))  # pyright: ignore[reportUnknownArgumentType]
        else:
            found.append(exc)
    return found
