"""The run of a pool: its workers' nursery around the ``async with`` body,
and the errors that leave it."""

from __future__ import annotations

import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

import trio

from ._exits import exit_error, reraise
from ._log import INFO, log

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from ._core import PoolCore

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

P = TypeVar("P")


@asynccontextmanager
async def opened(pool: P, core: PoolCore) -> AsyncGenerator[P, None]:
    """Run ``core``'s workers in a nursery around the ``async with`` body.

    What leaves it follows `exit_error`'s policy.
    """
    body_error: BaseException | None = None
    worker_errors: tuple[BaseException, ...] = ()
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
        worker_errors = group.exceptions
    finally:
        core.cancel_everything()  # resolve anything an outer cancel left
        core.exited()
        log(INFO, "pool %r stopped: %s", core.name, core.statistics())
    error = exit_error(body_error, worker_errors, block=f"pool {core.name!r}")
    if error is not None:
        reraise(error)
