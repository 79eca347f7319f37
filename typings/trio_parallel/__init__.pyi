# Type stubs for the public API of trio-parallel 1.3, which ships no py.typed.
#
# Only what trio-parallel 1.3.0 exports; the signatures follow its source
# (trio_parallel/_impl.py), with *args typed as in trio.to_thread.run_sync.
# pyright finds them through stubPath, mypy through mypy_path (pyproject.toml).
# Checked against the installed package with
#   MYPYPATH=typings python -m mypy.stubtest trio_parallel
# (what it still reports: attrs' generated members of WorkerContext, which
# users never construct, and str.__new__ on WorkerType).

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from enum import Enum
from typing import TypeVar, final

import trio
from typing_extensions import TypeVarTuple, Unpack

_T = TypeVar("_T")
_PosArgT = TypeVarTuple("_PosArgT")

class BrokenWorkerError(RuntimeError): ...

class WorkerType(str, Enum):
    SPAWN = "spawn"
    FORKSERVER = "forkserver"
    FORK = "fork"

@final
class _WorkerContextStatistics:  # not exported; returned by statistics()
    @property
    def idle_workers(self) -> int: ...
    @property
    def running_workers(self) -> int: ...

@final
class WorkerContext:  # made by open_worker_context; attributes left out
    async def run_sync(
        self,
        sync_fn: Callable[[Unpack[_PosArgT]], _T],
        *args: Unpack[_PosArgT],
        kill_on_cancel: bool = False,
        cancellable: bool = False,
        limiter: AbstractAsyncContextManager[object] | None = None,
    ) -> _T: ...
    def statistics(self) -> _WorkerContextStatistics: ...

async def run_sync(
    sync_fn: Callable[[Unpack[_PosArgT]], _T],
    *args: Unpack[_PosArgT],
    kill_on_cancel: bool = False,
    cancellable: bool = False,
    limiter: AbstractAsyncContextManager[object] | None = None,
) -> _T: ...
def current_default_worker_limiter() -> trio.CapacityLimiter: ...
def default_context_statistics() -> _WorkerContextStatistics: ...
def configure_default_context(
    idle_timeout: float = 600.0,
    init: Callable[[], object] = ...,
    retire: Callable[[], object] = ...,
    grace_period: float = 30.0,
    worker_type: WorkerType = ...,
) -> None: ...
def open_worker_context(
    idle_timeout: float = 600.0,
    init: Callable[[], object] = ...,
    retire: Callable[[], object] = ...,
    grace_period: float = 30.0,
    worker_type: WorkerType = ...,
) -> AbstractAsyncContextManager[WorkerContext]: ...
def cache_scope(
    idle_timeout: float = 600.0,
    init: Callable[[], object] = ...,
    retire: Callable[[], object] = ...,
    grace_period: float = 30.0,
    worker_type: WorkerType = ...,
) -> AbstractAsyncContextManager[None]: ...
