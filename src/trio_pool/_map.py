"""`Pool.map`: stream an iterable through a pool with bounded memory.

There is no background task and no async generator: items are pulled and
submitted inside ``__anext__``, in the consumer's own task, and never more
than the pool's size (``max_workers + capacity``) ahead of the consumer. The
``async with`` block owns the jobs it started: leaving it, by ``break``, an
exception or cancellation, cancels them and waits until they are done.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, final

import outcome
import trio
from trio.lowlevel import (
    Abort,
    Task,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    current_task,
    reschedule,
    wait_task_rescheduled,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import TracebackType

    from typing_extensions import Self

    from ._job import Job
    from ._pool import Pool, _UseDefault

R = TypeVar("R")


@final
class MapResults(AsyncIterator[R]):
    """The results of `Pool.map`; use it as ``async with ... as results``.

    Iterate it with ``async for``. Each ``__anext__`` is a checkpoint.
    """

    def __init__(
        self,
        pool: Pool,
        fn: Callable[[Any], Awaitable[Any]],
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        ordered: bool,
        outcomes: bool,
        name: str | None,
        timeout: float | _UseDefault | None,
    ) -> None:
        self._pool = pool
        self._fn = fn
        self._items = items
        self._sync_items: Iterator[Any] | None = None
        self._async_items: AsyncIterator[Any] | None = None
        self._ordered = ordered
        self._outcomes = outcomes
        self._name = name
        self._timeout = timeout
        self._in_flight: deque[Job[Any]] = deque()  # submitted, not delivered
        self._done: deque[Job[Any]] = deque()  # unordered: finished, in that order
        self._consumer: Task | None = None  # unordered: parked waiting for _done
        self._held: Job[Any] | None = None  # pulled, not yet accepted by the pool
        self._exhausted = False
        self._entered = False
        self._closed = False

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a pool.map() result can be entered only once")
        self._entered = True
        if isinstance(self._items, AsyncIterable):
            self._async_items = aiter(self._items)
        else:
            self._sync_items = iter(self._items)
        await checkpoint_if_cancelled()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        if not self._entered:
            raise RuntimeError(
                "use 'async with pool.map(...) as results:' and iterate over "
                "results, so that the jobs cannot outlive the loop"
            )
        return self

    @property
    def pulled_ahead(self) -> int:
        """Items taken from the source and not yet delivered."""
        return len(self._in_flight) + len(self._done) + (self._held is not None)

    async def __anext__(self) -> R:
        await checkpoint_if_cancelled()
        if self._closed or not self._entered:
            raise StopAsyncIteration
        await self._fill()
        if self._ordered:
            if not self._in_flight:
                raise StopAsyncIteration
            job = self._in_flight[0]  # stays owned (cancellable) while we wait
            if not job.done:
                await job._wait_done()
            elif self._pool._yield_due():
                await cancel_shielded_checkpoint()
            self._in_flight.popleft()
        else:
            if not self._in_flight and not self._done:
                raise StopAsyncIteration
            if not self._done:
                await self._wait_for_any()
            elif self._pool._yield_due():
                await cancel_shielded_checkpoint()
            job = self._done.popleft()
        return self._deliver(job)

    def _deliver(self, job: Job[Any]) -> R:
        error = job._error
        if self._outcomes:
            if error is None:
                return outcome.Value(job._value)  # type: ignore[return-value]
            error.__traceback__ = job._traceback
            return outcome.Error(error)  # type: ignore[return-value]
        if error is None:
            return job._value  # type: ignore[return-value]
        self._cancel_in_flight()  # as Executor.map: the first failure ends it
        self._closed = True
        raise error.with_traceback(job._traceback)

    async def _fill(self) -> None:
        """Pull and submit items until the window is full or the pool is."""
        pool = self._pool
        window = max(1, pool._max_workers + pool._capacity)
        while self.pulled_ahead < window or self._held is not None:
            job = self._held
            if job is None:
                if self._exhausted:
                    return
                try:
                    if self._sync_items is not None:
                        item = next(self._sync_items)
                    else:
                        assert self._async_items is not None
                        item = await anext(self._async_items)
                except (StopIteration, StopAsyncIteration):
                    self._exhausted = True
                    return
                job = self._held = pool._new_job(
                    "map", self._fn, (item,), self._name, self._timeout
                )
            if not pool._offer(job):
                if self._in_flight or self._done:
                    return  # deliver what is there; try again next time
                await pool._wait_to_accept(job)
            self._held = None
            if not self._ordered:
                job._on_done = self._job_done
            self._in_flight.append(job)

    def _job_done(self, job: Job[Any]) -> None:
        """Unordered mode: called by the job as it resolves."""
        if self._closed:
            return
        self._in_flight.remove(job)
        self._done.append(job)
        consumer = self._consumer
        if consumer is not None:
            self._consumer = None
            reschedule(consumer)

    async def _wait_for_any(self) -> None:
        self._consumer = current_task()

        def abort(_: object) -> Abort:
            self._consumer = None
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def _cancel_in_flight(self) -> None:
        for job in self._in_flight:
            job.cancel()

    async def aclose(self) -> None:
        """Cancel the jobs not delivered yet and wait until they are done.

        Called by ``async with`` on the way out; safe to call twice.
        """
        if self._closed and not self._in_flight:
            await checkpoint_if_cancelled()
            return
        self._closed = True
        self._held = None
        jobs = list(self._in_flight)
        self._in_flight.clear()
        self._done.clear()
        for job in jobs:
            job.cancel()
        with trio.CancelScope(shield=True):
            for job in jobs:
                if not job.done:
                    await job._wait_done()
