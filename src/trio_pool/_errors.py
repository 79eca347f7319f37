"""The exceptions trio_pool raises.

Each one subclasses :class:`PoolError` and, where there is one, the Trio
exception a Trio user would already catch for the same situation.
"""

from __future__ import annotations

import sys

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


class PoolError(Exception):
    """Base class for every error raised by trio_pool."""


class PoolClosed(PoolError, trio.ClosedResourceError):
    """The pool no longer takes work: it was closed, shut down or has exited."""


class PoolOverloaded(PoolError, trio.WouldBlock):
    """There was no room in the queue, now or within ``submit_timeout``; or,
    with ``shed=True``, the job could not finish before the caller's deadline.

    Attributes:
        reason: ``"overloaded"`` (no room) or ``"deadline"`` (shed).
    """

    reason: str = "overloaded"


class JobTimeout(PoolError, trio.TooSlowError):
    """The job ran past its time limit and was cancelled."""


class JobCancelled(PoolError):
    """The job was cancelled by :meth:`Job.cancel`, by shutdown or from outside."""


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in ``group`` and in the groups nested in it, in order."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(leaves(exc))  # pyright: ignore[reportUnknownArgumentType]
        else:
            found.append(exc)
    return found
