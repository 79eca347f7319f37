"""`as_completed`: job handles in the order they finish."""

# as_completed listens on each job through the job record (its core checks the caller).
# pyright: reportPrivateUsage=false

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import trio
from trio.lowlevel import (
    ParkingLot,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    enable_ki_protection,
)

from ._job import Job

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

    from typing_extensions import Self


T = TypeVar("T")


@final
class AsCompleted(Generic[T]):
    """The handles of some jobs, yielded as each one finishes.

    Made by `as_completed`. It starts no task: each job tells it when it
    resolves. Leaving the loop early (or `aclose`) stops listening; the jobs
    themselves go on.
    """

    def __init__(self, jobs: Iterable[Job[T]]) -> None:
        self._ready: deque[Job[T]] = deque()
        self._pending: set[Job[T]] = set()  # not finished: never a yielded one
        self._lot = ParkingLot()
        self._closed = False
        self._busy = False
        self._listener = self._finished
        # Check everything first: a refused call registers nothing.
        try:
            items = iter(jobs)
        except TypeError:
            raise TypeError(
                f"as_completed() takes an iterable of Job handles, not jobs={jobs!r}"
            ) from None
        distinct = list(dict.fromkeys(items))  # each job once, first order
        for job in distinct:
            if not isinstance(job, Job):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise TypeError(f"as_completed() takes Job handles, not {job!r}")
        for core in {id(job._core): job._core for job in distinct}.values():
            core.check_caller("as_completed")
        self._listen(distinct)

    @enable_ki_protection
    def _listen(self, jobs: list[Job[T]]) -> None:
        for job in jobs:
            if job.done:
                self._ready.append(job)
            else:
                self._pending.add(job)
        for job in self._pending:
            job._listen(self._listener)

    def _finished(self, job: Job[Any]) -> None:
        """Called by the core as one of the jobs resolves."""
        self._pending.discard(job)
        self._ready.append(job)
        self._lot.unpark()

    def __aiter__(self) -> Self:
        return self

    def __repr__(self) -> str:
        closed = ", closed" if self._closed else ""
        return (
            f"<trio_pool.AsCompleted {len(self._ready)} ready, "
            f"{len(self._pending)} pending{closed}>"
        )

    async def __anext__(self) -> Job[T]:
        """The next job to finish. A checkpoint.

        Raises:
            StopAsyncIteration: every job was yielded, or it was closed.
            trio.BusyResourceError: another task is iterating it.
        """
        await checkpoint_if_cancelled()
        if self._busy:
            raise trio.BusyResourceError("another task is iterating as_completed()")
        self._busy = True
        try:
            ready = self._ready
            if ready or self._closed or not self._pending:
                await cancel_shielded_checkpoint()  # a full checkpoint, always
            while not ready:
                if self._closed or not self._pending:
                    raise StopAsyncIteration
                await self._lot.park()
            if self._closed:
                raise StopAsyncIteration
            return ready.popleft()
        finally:
            self._busy = False

    @enable_ki_protection
    def close(self) -> None:
        """Stop listening to the jobs not finished yet (they go on)."""
        if self._closed:
            return
        self._closed = True
        for job in self._pending:
            job._unlisten(self._listener)
        self._pending.clear()
        self._ready.clear()
        self._lot.unpark_all()

    async def aclose(self) -> None:
        """`close`, as an async method (for ``contextlib.aclosing``)."""
        self.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def as_completed(jobs: Iterable[Job[T]]) -> AsCompleted[T]:
    """Yield the handles of ``jobs`` in the order they finish.

    As ``concurrent.futures.as_completed``, for `Job` handles::

        async with trio_pool.as_completed(jobs) as finished:
            async for job in finished:
                print(job.name, await job.wait())

    Jobs already done come first, in the order given. A job listed twice is
    yielded once. No task is started, and memory is one entry per job not
    yielded yet: a yielded job is not kept alive by the iterator.
    Leaving the ``async with`` (or calling `AsCompleted.close`) stops
    listening; the jobs go on. Used without ``async with``, the listening
    stops as each job finishes. Neither entering nor leaving the ``async
    with`` is a checkpoint (they only register and unregister listeners);
    each step of the ``async for`` is one.

    Raises:
        TypeError: an item is not a `Job`.
        RuntimeError: called from another thread or Trio run than a job's
            pool. Either way nothing was registered.
    """
    return AsCompleted(jobs)
