"""The run of a pool: its workers' nursery around the ``async with`` body,
and the errors that leave it."""

from __future__ import annotations

import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

import trio

from ._errors import leaves
from ._log import INFO, log

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from ._core import PoolCore

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

P = TypeVar("P")


@asynccontextmanager
async def opened(pool: P, core: PoolCore) -> AsyncGenerator[P, None]:
    """Run ``core``'s workers in a nursery around the ``async with`` body."""
    body_error: BaseException | None = None
    worker_errors: list[BaseException] = []
    log(
        INFO,
        "pool %r started: %d workers, capacity %d",
        core.name,
        core.min_workers,
        core.capacity,
    )
    try:
        async with trio.open_nursery() as nursery:
            await core.open(nursery).wait()  # every worker started and idle
            try:
                yield pool
            except BaseException as exc:
                body_error = exc
                core.cancel_everything()
                nursery.cancel_scope.cancel()
            else:
                core.close()
    except BaseExceptionGroup as group:
        rest = group.split(trio.Cancelled)[1]  # pyright: ignore[reportUnknownMemberType]
        if rest is None and body_error is None:
            raise
        if rest is not None:
            worker_errors = leaves(rest)
    finally:
        core.cancel_everything()  # resolve anything an outer cancel left
        core.exited()
        log(INFO, "pool %r stopped: %s", core.name, core.statistics())
    if worker_errors:
        body_own = _without_cancelled(body_error)  # the pool's own: no news
        if body_own is not None and all(body_own is not e for e in worker_errors):
            worker_errors.insert(0, body_own)  # not a job's error read in the body
        if len(worker_errors) == 1:
            raise worker_errors[0]
        raise BaseExceptionGroup("errors in trio_pool", worker_errors)
    if body_error is not None:
        raise body_error


def _without_cancelled(error: BaseException | None) -> BaseException | None:
    """``error`` without its `trio.Cancelled` (also inside groups), or None."""
    if isinstance(error, BaseExceptionGroup):
        return error.split(trio.Cancelled)[1]  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    if isinstance(error, trio.Cancelled):
        return None
    return error
