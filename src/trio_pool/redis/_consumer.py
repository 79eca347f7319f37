"""`open_stream_consumer`: a consumer-group consumer of a Redis stream feeding a pool.

Three tasks in the consumer's nursery, and the handler's jobs in the pool:

* the reader takes entries: new ones with ``XREADGROUP``, and every
  ``idle_time / 2`` seconds those idle for ``idle_time`` with ``XAUTOCLAIM``
  (a crashed consumer's, or failed ones due for a retry). It never takes more
  than the pool has room for, and waits for room before it reads again;
* each job runs the handler, then hands its entry to the settler;
* the reader's next read acknowledges the entries whose job succeeded, in
  the same round trip; the settler acknowledges them when the reader cannot
  read soon (in batches: all that ended while the previous ``XACK`` was on
  its way), dead-letters those whose last allowed delivery failed, and leaves
  the other failures pending;
* the renewer resets the idle time of the entries in hand every
  ``idle_time / 3`` seconds, so that no consumer reclaims an entry whose job
  is merely long or queued, and reads the group's pending count and lag.

Every entry taken is in exactly one place: in hand (``_held``, no verdict),
settling (a verdict, queued for the settler), or counted as acked, failed,
dead-lettered or released.
"""

from __future__ import annotations

import math
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, final

import trio

import trio_pool

from .._checks import check_async_fn, check_bool, check_int, check_seconds
from .._exits import exit_error, reraise
from .._log import INFO, WARNING, log
from ._errors import ConsumerError
from ._lifecycle import CREATE_GROUP, ConsumerCore
from ._telemetry import ConsumerTelemetry

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable
    from contextlib import AbstractAsyncContextManager

    import coredis
    from opentelemetry.metrics import MeterProvider

    from ._delivery import Delivery
    from ._lifecycle import CreateGroup
    from ._statistics import ConsumerStatistics

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


def _check_name(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty str, not {value!r}")
    return value


def _check_handler(handler: object) -> None:
    if not callable(handler):
        raise TypeError(f"handler must be an async function, not {handler!r}")
    try:
        check_async_fn("open_stream_consumer", handler)
    except TypeError:
        raise TypeError(
            f"handler must be an async function (async def), not {handler!r}"
        ) from None


def _check_idle_time(value: object) -> float:
    seconds = check_seconds("idle_time", value)
    if seconds is None or not 0 < seconds < math.inf:
        raise ValueError(f"idle_time must be > 0 and finite, not {value!r}")
    return seconds


def _check_grace(value: object) -> float:
    """Seconds >= 0 (``math.inf`` for None)."""
    seconds = check_seconds("grace_period", value)
    return math.inf if seconds is None else seconds


@final
class StreamConsumer:
    """A consumer in a Redis consumer group, feeding a `trio_pool.Pool`.

    Made by `open_stream_consumer`, which says what it does. `statistics` and
    `close` never block; `shutdown` and `join` are checkpoints. The names
    are the pool's for the same ideas (`trio_pool.Pool.close`,
    `trio_pool.Pool.join`).
    """

    def __init__(self, core: ConsumerCore) -> None:
        self._core = core

    def __repr__(self) -> str:
        core = self._core
        return (
            f"<trio_pool.redis.StreamConsumer {core.name!r} "
            f"stream={core.stream!r} group={core.group!r}>"
        )

    @property
    def name(self) -> str:
        """The consumer's name in its group."""
        return self._core.name

    @property
    def stream(self) -> str:
        """The stream's key."""
        return self._core.stream

    @property
    def group(self) -> str:
        """The consumer group's name."""
        return self._core.group

    @property
    def dead_letter_stream(self) -> str:
        """The key of the stream that receives the dead letters."""
        return self._core.dead_letter_stream

    def statistics(self) -> ConsumerStatistics:
        """Return a `ConsumerStatistics` snapshot. Never blocks."""
        return self._core.statistics()

    def close(self) -> None:
        """Stop taking entries. Never blocks.

        A read on its way (at most 0.5 seconds long) ends first, and what
        Redis delivered to it stays pending, for a consumer to reclaim after
        the idle time. The jobs in
        hand go on, and their entries are acknowledged as they succeed.
        `ConsumerStatistics.closed` is true from then on. Closing twice does
        nothing.
        """
        self._core.stop()

    async def shutdown(self, grace_period: float | None = None) -> None:
        """Stop, let the jobs in hand finish, and settle every entry taken.

        Stops taking entries, waits up to ``grace_period`` seconds (``None``:
        no limit) for the jobs in hand to end, then cancels the rest: their
        entries stay pending, and a consumer reclaims them after the idle
        time. Then it settles the entries whose jobs ended, for at most 5
        seconds: it returns within ``grace_period`` plus those 5 seconds
        (plus up to 1.5 seconds for the read on its way to end, and the time
        cancelled jobs take to end) even when Redis does not answer, and
        the entries Redis did not settle in time stay pending (counted as
        released, and logged at WARNING). When it returns every
        entry this consumer took is acknowledged, dead-lettered or pending
        in Redis: nothing is lost. The pool's other jobs are not touched.
        Leaving the ``async with`` calls it too. This is a checkpoint.

        Raises:
            TypeError, ValueError: a bad ``grace_period``.
            coredis.exceptions.RedisError: Redis failed while the entries
                were settled (those not settled stay pending).
        """
        await self._core.shutdown(_check_grace(grace_period))

    async def join(self) -> None:
        """Wait until the group has handled everything in the stream so far.

        Returns once this consumer holds no entry and, in Redis, the group
        has no pending entry (every entry delivered was acknowledged or
        dead-lettered; failed ones waiting for a retry, and entries other
        consumers hold, count as pending) and no entry left to deliver. For
        batch jobs and tests: a live stream may never drain. It asks Redis
        whenever this consumer has settled every entry it took, and every
        0.1 seconds (or ``idle_time / 2``, if shorter) while others hold
        entries. This is a checkpoint.

        Raises:
            coredis.exceptions.RedisError: Redis failed.
        """
        await self._core.wait_drained()


@asynccontextmanager
async def _opened(
    consumer: StreamConsumer,
    core: ConsumerCore,
    grace_period: float,
    create_group: CreateGroup | None,
) -> AsyncGenerator[StreamConsumer, None]:
    """Run ``core``'s tasks in a nursery around the ``async with`` body."""
    await core.prepare(create_group)
    telemetry = core.telemetry
    log(
        INFO,
        "stream consumer %r started on %r, group %r",
        core.name,
        core.stream,
        core.group,
    )
    if telemetry is not None:
        telemetry.opened()
    core.start()
    body_error: BaseException | None = None
    task_errors: tuple[BaseException, ...] = ()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(core.run_settler)
            nursery.start_soon(core.run_renewer)
            nursery.start_soon(core.run_reader)
            try:
                yield consumer
            except BaseException as exc:
                body_error = exc
                with trio.CancelScope(shield=True):  # bounded: SETTLE_LIMIT
                    try:
                        await core.shutdown(0.0)
                    except Exception as flush_error:
                        log(
                            WARNING,
                            "stream consumer %r: settling on the way out failed; "
                            "the entries not settled stay pending",
                            core.name,
                            exc_info=flush_error,
                        )
            else:
                await core.shutdown(grace_period)
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        task_errors = group.exceptions
    finally:
        if telemetry is not None:
            telemetry.closed()
        log(INFO, "stream consumer %r stopped: %s", core.name, core.statistics())
    error = exit_error(
        body_error,
        task_errors,
        block=f"stream consumer {core.name!r}",
        crashed=ConsumerError,
    )
    if error is not None:
        reraise(error)


def open_stream_consumer(
    pool: trio_pool.Pool,
    client: coredis.Redis[Any],
    handler: Callable[[Delivery], Awaitable[object]],
    *,
    stream: str,
    group: str,
    name: str,
    create_group: CreateGroup | None = None,
    idle_time: float = 60.0,
    max_deliveries: int = 5,
    dead_letter_stream: str | None = None,
    grace_period: float | None = None,
    reconnect_timeout: float | None = 60.0,
    meter_provider: MeterProvider | None = None,
    telemetry: bool = True,
) -> AbstractAsyncContextManager[StreamConsumer]:
    """Consume ``stream`` as ``name`` in ``group``, running ``handler`` in ``pool``.

    Use it as ``async with open_stream_consumer(...) as consumer:`` inside the
    pool's ``async with`` and the client's. Each entry becomes one job of the
    pool, ``handler(delivery)`` with a `Delivery`; the entry is acknowledged
    (``XACK``) only after its job succeeded. Delivery is at least once: an
    entry may be handled again after a failure or a crash, so make the
    handler idempotent (`Delivery.id` is a stable key).

    * Backpressure: the consumer never holds more entries than the pool has
      room for (``max_workers + capacity``, less what it holds), and reads
      again only when a job has ended.
    * A job that raises or runs out of time leaves its entry pending: it is
      retried (by any consumer of the group) once it has been idle for
      ``idle_time``. An entry whose last allowed delivery fails, or that was
      delivered more than ``max_deliveries`` times without an acknowledgement
      (its consumers crashed), or whose payload cannot be decoded, goes to
      the dead-letter stream with its error and is acknowledged on the
      source: it is never retried forever.
    * When Redis goes away (or restarts) the consumer keeps its jobs and
      retries its calls, with pauses that double from 0.1 up to 5 seconds
      (jittered), for up to ``reconnect_timeout`` seconds; then it fails
      with `ConsumerError`. Entries in hand longer than ``idle_time`` without
      Redis may be reclaimed by other consumers meanwhile (handled twice).
    * Entries other consumers took and left idle for ``idle_time`` (they
      crashed or stopped) are reclaimed (``XAUTOCLAIM``). While a job is in
      hand, the consumer renews its entry every ``idle_time / 3``, so a long
      or queued job is never taken over by a live peer.
    * Leaving the ``async with`` normally is `StreamConsumer.shutdown` with
      ``grace_period``: stop reading, let the jobs in hand finish, cancel
      those still running after the grace period, and leave their entries
      pending for another consumer. Nothing is lost. On an error or a
      cancellation the jobs in hand are cancelled at once, and the entries
      whose jobs succeeded are still acknowledged. Settling after the jobs
      takes at most 5 seconds (``SETTLE_LIMIT``), even when Redis hangs.

    Args:
        pool: the pool that runs the jobs. Other tasks may submit to it too.
        client: an open ``coredis.Redis`` client (inside its ``async with``).
        handler: an async function of one `Delivery`.
        stream: the stream's key.
        group: the consumer group. It must exist, unless ``create_group``
            says to create it (and the stream, if missing) and from where.
        name: this consumer's name, unique in the group (the same name in
            two live processes makes them steal each other's entries);
            returned as `StreamConsumer.name`, as ``open_pool(name=)`` is
            ``Pool.name``.
        create_group: if the group does not exist, ``None`` (the default)
            refuses to start; ``"new"`` creates it at the end of the stream
            (only entries added from now on, Redis's ``$``); ``"start"``
            creates it at the start (the stream's whole history, ``0``). An
            existing group is used as it is.
        idle_time: seconds an entry may stay unacknowledged, and not renewed,
            before another consumer may take it over: the crash-detection
            delay and the retry delay.
        max_deliveries: how many times an entry may be delivered before it
            goes to the dead-letter stream; an int >= 1.
        dead_letter_stream: the dead letters' stream; ``"{stream}:dead"`` by
            default.
        grace_period: seconds the jobs in hand may take to finish when the
            ``async with`` ends normally (``None``: no limit).
        reconnect_timeout: seconds the consumer goes on retrying while Redis
            is away (connection refused or lost, ``LOADING``, the client's
            ``stream_timeout``) before it gives up with `ConsumerError`;
            ``None``: it never gives up. Its jobs go on meanwhile; the
            retries are logged at WARNING.
        meter_provider: where the consumer's metrics go; the global provider
            by default.
        telemetry: ``False`` turns the consumer's metrics off.

    Raises:
        TypeError, ValueError: a bad argument, at once.
        LookupError: on entering, when the group (or the stream) does not
            exist and ``create_group`` is ``None``; it names both.
        coredis.exceptions.RedisError: on entering (creating the group).
        ConsumerError: out of the ``async with``, when the consumer failed
            while it ran (Redis failed or went away): one exception, a
            ``RedisError``, whose ``__cause__`` is a group of the failures;
            the entries not settled stay pending. An exception of the
            ``async with`` body alone comes out as itself (see :doc:`/errors`).
    """
    if not isinstance(pool, trio_pool.Pool):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"pool must be a trio_pool.Pool, not {pool!r}")
    _check_name("stream", stream)
    _check_name("group", group)
    _check_name("name", name)
    _check_handler(handler)
    idle = _check_idle_time(idle_time)
    check_int("max_deliveries", max_deliveries, 1, sys.maxsize)
    dead = f"{stream}:dead" if dead_letter_stream is None else dead_letter_stream
    _check_name("dead_letter_stream", dead)
    if dead == stream:
        raise ValueError("dead_letter_stream must not be the stream itself")
    grace = _check_grace(grace_period)
    reconnect = check_seconds("reconnect_timeout", reconnect_timeout)
    check_bool("telemetry", telemetry)
    if create_group not in CREATE_GROUP:
        raise ValueError(
            f"create_group must be None, 'new' or 'start', not {create_group!r}"
        )
    core: ConsumerCore

    def statistics() -> ConsumerStatistics:
        return core.statistics()

    consumer_telemetry = (
        ConsumerTelemetry(
            pool_name=pool.name,
            stream=stream,
            group=group,
            consumer=name,
            statistics=statistics,
            meter_provider=meter_provider,
        )
        if telemetry
        else None
    )
    core = ConsumerCore(
        pool=pool,
        client=client,
        stream=stream,
        group=group,
        consumer=name,
        handler=handler,
        idle_time=idle,
        max_deliveries=max_deliveries,
        dead_letter_stream=dead,
        reconnect_timeout=math.inf if reconnect is None else reconnect,
        telemetry=consumer_telemetry,
    )
    return _opened(StreamConsumer(core), core, grace, create_group)
