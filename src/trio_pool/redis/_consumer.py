"""`open_stream_consumer`: a consumer-group consumer of a Redis stream feeding a pool.

Three tasks in the consumer's nursery, and the handler's jobs in the pool:

* the reader takes entries: new ones with ``XREADGROUP``, and every
  ``idle_time / 2`` seconds those idle for ``idle_time`` with ``XAUTOCLAIM``
  (a crashed consumer's, or failed ones due for a retry). It never takes more
  than the pool has room for, and waits for room before it reads again;
* each job runs the handler, then hands its entry to the settler;
* the settler acknowledges the entries whose job succeeded (in batches: all
  that ended while the previous ``XACK`` was on its way), dead-letters those
  whose last allowed delivery failed, and leaves the other failures pending;
* the renewer resets the idle time of the entries in hand every
  ``idle_time / 3`` seconds, so that no consumer reclaims an entry whose job
  is merely long or queued, and reads the group's pending count and lag.

Every entry taken is in exactly one place: in hand (``_held``, no verdict),
settling (a verdict, queued for the settler), or counted as acked, failed,
dead-lettered or released.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import math
import sys
from collections import deque
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, final

import trio
from coredis.exceptions import StreamDuplicateConsumerGroupError

import trio_pool

from .._log import DEBUG, INFO, WARNING, log
from ._delivery import Delivery, dead_letter_fields
from ._errors import consumer_error
from ._payload import PayloadError, decode_job, raw, text
from ._scripts import CLAIM, DEAD_LETTER, RENEW, parse_claim, parse_lost
from ._statistics import ConsumerStatistics
from ._telemetry import ConsumerTelemetry

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
    from contextlib import AbstractAsyncContextManager

    import coredis
    from coredis.commands.script import Script
    from opentelemetry.metrics import MeterProvider

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

ROOM_POLL: Final = 0.05
"""Seconds between looks at a pool that other submitters keep full (the pool
tells only its own submitters when room frees up)."""
DRAIN_POLL: Final = 0.1
"""Seconds between questions to Redis in `StreamConsumer.wait_drained` while
other consumers hold entries (their acknowledgements tell this one nothing)."""
SETTLE_LIMIT: Final = 5.0
"""Seconds a stopping consumer may spend settling (acknowledging,
dead-lettering) the entries whose jobs ended, after the grace period: what
Redis has not taken by then stays pending."""
RENEW_CHUNK: Final = 500
"""Entries per call of the renew script (each call blocks Redis briefly)."""
FIRST_ID: Final = "0-0"
MAX_BLOCK_MS: Final = 86_400_000
"""The longest blocking read of a client without a ``stream_timeout``."""


class Verdict(enum.Enum):
    """What the settler does with an entry."""

    ACK = "ack"
    RETRY = "retry"  # left pending; counted as failed
    DEAD = "dead"
    RELEASE = "release"  # left pending; counted as released


@final
class _Held:
    """An entry this consumer took, until it is settled."""

    __slots__ = (
        "deliveries",
        "error",
        "error_type",
        "fields",
        "id",
        "job",
        "payload",
        "vanished",
        "verdict",
    )

    id: str
    fields: tuple[tuple[bytes, bytes], ...]
    deliveries: int
    payload: Any
    job: trio_pool.Job[object] | None
    verdict: Verdict | None
    error_type: str
    error: str
    vanished: bool

    def __init__(
        self, identifier: str, fields: tuple[tuple[bytes, bytes], ...], deliveries: int
    ) -> None:
        self.id = identifier
        self.fields = fields
        self.deliveries = deliveries
        self.payload = None
        self.job = None
        self.verdict = None
        self.error_type = ""
        self.error = ""
        self.vanished = False  # deleted or taken over while in hand (logged)


def _check_name(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty str, not {value!r}")
    return value


def _check_handler(handler: object) -> None:
    if not callable(handler):
        raise TypeError(f"handler must be an async function, not {handler!r}")
    target = getattr(handler, "func", handler)  # functools.partial
    if not (
        inspect.iscoroutinefunction(target)
        or inspect.iscoroutinefunction(getattr(target, "__call__", None))  # noqa: B004
    ):
        raise TypeError(
            f"handler must be an async function (async def), not {handler!r}"
        )


def _check_positive_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    seconds = float(value)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"{name} must be > 0 and finite, not {value!r}")
    return seconds


def _check_grace(name: str, value: object) -> float:
    """Seconds >= 0 (``math.inf`` for None)."""
    if value is None:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {value!r}")
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, not {value!r}")
    return float(value)


def _describe(error: BaseException) -> tuple[str, str]:
    """(error type, message) of a job's error, as a dead letter records them."""
    if isinstance(error, trio_pool.JobTimeout):
        return "timeout", _message(error)
    return type(error).__qualname__, _message(error)


def _message(error: BaseException) -> str:
    """The error's message, even when its ``__str__`` raises."""
    try:
        return str(error) or repr(error)
    except Exception:
        return f"<{type(error).__qualname__} whose str() raised>"


@final
class ConsumerCore:
    """The state of one consumer and its tasks; `StreamConsumer` is its facade."""

    def __init__(
        self,
        *,
        pool: trio_pool.Pool,
        client: coredis.Redis[Any],
        stream: str,
        group: str,
        consumer: str,
        handler: Callable[[Delivery], Awaitable[object]],
        idle_time: float,
        max_deliveries: int,
        dead_letter_stream: str,
        telemetry: ConsumerTelemetry | None,
    ) -> None:
        self._pool = pool
        self._client = client
        self._stream = stream
        self._group = group
        self._name = consumer
        self._handler = handler
        self._job_name = getattr(handler, "__qualname__", None) or repr(handler)
        self._idle_ms = max(1, round(idle_time * 1000))
        self._idle_time = idle_time
        self._longest_block_ms = _longest_block_ms(client)
        self._max_deliveries = max_deliveries
        self._dead_letter_stream = dead_letter_stream
        self.telemetry = telemetry
        self._claim: Script[Any] = client.register_script(CLAIM)
        self._renew: Script[Any] = client.register_script(RENEW)
        self._dead_letter: Script[Any] = client.register_script(DEAD_LETTER)
        # The books.
        self._held: dict[str, _Held] = {}
        self._in_hand = 0
        self._read = 0
        self._reclaimed = 0
        self._acked = 0
        self._failed = 0
        self._dead_lettered = 0
        self._released = 0
        self._pending: int | None = None
        self._lag: int | None = None
        self._reading = False
        # Wake-ups.
        self._room = trio.lowlevel.ParkingLot()  # one of our jobs ended
        self._to_settle: deque[_Held] = deque()
        self._settle_wanted = trio.lowlevel.ParkingLot()
        self._settled = trio.lowlevel.ParkingLot()
        self._changes = 0  # bumped whenever an entry is taken or settled
        self._settle_closed = False
        self._settler_running = False
        self._settler_scope = trio.CancelScope()
        self._reader_scope = trio.CancelScope()
        self._stopped = trio.Event()  # the reader has returned
        self._job_ids: dict[trio_pool.Job[object], str] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def stream(self) -> str:
        return self._stream

    @property
    def group(self) -> str:
        return self._group

    @property
    def dead_letter_stream(self) -> str:
        return self._dead_letter_stream

    def statistics(self) -> ConsumerStatistics:
        """A snapshot of the books."""
        settling = len(self._held) - self._in_hand
        return ConsumerStatistics(
            name=self._name,
            stream=self._stream,
            group=self._group,
            read=self._read,
            reclaimed=self._reclaimed,
            in_hand=self._in_hand,
            settling=settling,
            acked=self._acked,
            failed=self._failed,
            dead_lettered=self._dead_lettered,
            released=self._released,
            pending=self._pending,
            lag=self._lag,
            reading=self._reading,
        )

    # ------------------------------------------------------------ stopping

    def stop(self) -> None:
        """Stop the reader (twice does nothing)."""
        self._reader_scope.cancel()

    async def shutdown(self, grace: float) -> None:
        """Stop, wait up to ``grace`` seconds for the jobs, cancel, settle."""
        with self._client.decoding(False):  # fields as the bytes they are
            self.stop()
            await self._stopped.wait()
            with trio.move_on_after(grace):
                await self._wait_jobs()
            for held in list(self._held.values()):
                if held.verdict is None and held.job is not None:
                    held.job.cancel()
            await self._wait_jobs()
            self._settle_closed = True
            self._settle_wanted.unpark_all()
            with trio.move_on_after(SETTLE_LIMIT):
                while self._settler_running:  # it settles what is queued, returns
                    await self._settled.park()
                while self._to_settle:  # the settler is gone (an error or a cancel)
                    await self._settle_some()
            if self._settler_running:  # Redis does not answer it
                self._settler_scope.cancel()
                while self._settler_running:
                    await self._settled.park()
            self._abandon_unsettled()

    def _abandon_unsettled(self) -> None:
        """Count what could not be settled in time as released (still pending)."""
        if not self._to_settle:
            return
        abandoned = list(self._to_settle)
        self._to_settle.clear()
        succeeded = sum(1 for held in abandoned if held.verdict is Verdict.ACK)
        self._released += len(abandoned)
        self._forget(abandoned)
        log(
            WARNING,
            "stream consumer %r: Redis did not settle %d entries within %ss "
            "(%d of them succeeded but are not acknowledged): they stay pending, "
            "and a consumer takes them over after the idle time (handled again)",
            self._name,
            len(abandoned),
            SETTLE_LIMIT,
            succeeded,
        )

    async def _wait_jobs(self) -> None:
        """Wait until every job in hand has ended (cancelled queued ones too)."""
        jobs = [
            held.job
            for held in self._held.values()
            if held.verdict is None and held.job is not None
        ]
        async with trio_pool.as_completed(jobs) as finished:
            async for job in finished:
                identifier = self._job_ids.get(job)
                held = None if identifier is None else self._held.get(identifier)
                if held is not None and held.verdict is None:
                    # It never ran (cancelled while queued): its wrapper
                    # never called _job_ended.
                    self._job_ended(held, None, ran=False)

    async def wait_drained(self) -> None:
        """Wait until nothing is held, pending or undelivered in the group."""
        with self._client.decoding(False):  # fields as the bytes they are
            while True:
                changes = self._changes
                if not self._held and await self._group_drained():
                    return
                if changes == self._changes:
                    with trio.move_on_after(min(self._idle_time / 2, DRAIN_POLL)):
                        await self._settled.park()
                else:
                    await trio.lowlevel.checkpoint()

    async def _group_drained(self) -> bool:
        info = await self._group_info()
        if info is None:
            return False
        newest = await self._client.xrevrange(self._stream, "+", "-", count=1)
        newest_id = text(newest[0].identifier) if newest else FIRST_ID
        last_delivered = _as_text(info.get("last-delivered-id")) or FIRST_ID
        return info.get("pending") == 0 and _id_key(newest_id) <= _id_key(
            last_delivered
        )

    async def _group_info(self) -> dict[str, object] | None:
        """The group's line of ``XINFO GROUPS``, keys as text; None if missing."""
        for line in await self._client.xinfo_groups(self._stream):
            info: dict[str, object] = {text(key): value for key, value in line.items()}
            if _as_text(info.get("name")) == self._group:
                return info
        return None

    # ------------------------------------------------------------- reading

    def start(self) -> None:
        """Mark the consumer reading (its tasks start right after)."""
        self._reading = True

    async def run_reader(self) -> None:
        """The reader task: take entries while there is room, until stopped."""
        with self._client.decoding(False):  # fields as the bytes they are
            next_scan = trio.current_time()
            cursor = FIRST_ID
            try:
                with self._reader_scope:
                    while True:
                        room = await self._wait_for_room()
                        now = trio.current_time()
                        if room is None:
                            pool_open = False
                        elif now >= next_scan:
                            scanned = await self._reclaim(cursor, room)
                            pool_open = scanned is not None
                            cursor = scanned or FIRST_ID
                            if cursor == FIRST_ID:  # the scan went round
                                next_scan = now + self._idle_time / 2
                        else:
                            block = max(1, math.ceil((next_scan - now) * 1000))
                            block = min(block, self._longest_block_ms)
                            pool_open = await self._read_new(room, block)
                        if not pool_open:
                            log(
                                INFO,
                                "stream consumer %r: the pool closed; it stops reading",
                                self._name,
                            )
                            return
            finally:
                self._reading = False
                self._release_unsubmitted()
                self._stopped.set()

    def _room_now(self) -> int:
        stats = self._pool.statistics()
        if stats.closed:
            return -1
        accepted = stats.queued + stats.running + stats.waiting_submitters
        return max(0, stats.max_workers + stats.capacity - accepted)

    async def _wait_for_room(self) -> int | None:
        """The room in the pool, once there is some; None once it has closed."""
        while True:
            room = self._room_now()
            if room < 0:
                return None
            if room > 0:
                return room
            if self._in_hand:
                await self._room.park()  # one of our jobs ends
            else:  # others' jobs fill the pool, and the pool tells only them
                await trio.sleep(ROOM_POLL)

    async def _read_new(self, room: int, block_ms: int) -> bool:
        try:
            reply = await self._client.xreadgroup(
                self._group,
                self._name,
                {self._stream: ">"},
                count=room,
                block=block_ms,
            )
        except TimeoutError:
            # The client's stream_timeout ran out first (Redis slow to
            # answer): an empty read. What Redis delivered to it, if
            # anything, stays pending and is reclaimed after the idle time.
            log(
                DEBUG,
                "stream consumer %r: a read timed out in the client; read again",
                self._name,
            )
            return True
        if not reply:
            return True
        taken: list[_Held] = []
        for entries in reply.values():
            for entry in entries:
                fields = tuple(
                    (raw(key), raw(value)) for key, value in entry.field_values.items()
                )
                taken.append(_Held(text(entry.identifier), fields, 1))
        self._read += len(taken)
        return await self._take(taken)

    async def _reclaim(self, cursor: str, room: int) -> str | None:
        reply = await _run(
            self._claim,
            [self._stream],
            [self._group, self._name, self._idle_ms, cursor, room],
        )
        cursor, claimed = parse_claim(reply)
        taken: list[_Held] = []
        for entry in claimed:
            if entry.id in self._held:  # ours already: we were too slow to renew
                log(
                    DEBUG,
                    "stream consumer %r: reclaimed its own entry %s",
                    self._name,
                    entry.id,
                )
                continue
            taken.append(_Held(entry.id, entry.fields, entry.deliveries))
        if taken:
            self._reclaimed += len(taken)
            log(
                DEBUG,
                "stream consumer %r: reclaimed %d entries idle for %ss",
                self._name,
                len(taken),
                self._idle_time,
            )
            if not await self._take(taken):
                return None
        return cursor

    async def _take(self, taken: list[_Held]) -> bool:
        """Record the entries taken, then submit each (or judge it at once).

        Returns False if the pool closed (the entries not submitted stay in
        hand, and are released as the reader stops).
        """
        for held in taken:
            self._held[held.id] = held
            self._in_hand += 1
        self._changes += 1
        for held in taken:
            if held.deliveries > self._max_deliveries:
                self._judge(
                    held,
                    Verdict.DEAD,
                    "delivery_limit",
                    f"delivered {held.deliveries} times without an acknowledgement "
                    f"(max_deliveries={self._max_deliveries})",
                )
                continue
            try:
                held.payload = decode_job(held.fields)
            except PayloadError as exc:
                self._judge(held, Verdict.DEAD, "PayloadError", str(exc))
                continue
            if not await self._submit(held):
                return False
        return True

    async def _submit(self, held: _Held) -> bool:
        pool = self._pool
        try:
            try:
                job = pool.submit_nowait(self._run_job, held, name=self._job_name)
            except trio_pool.PoolOverloaded:  # others took the room meanwhile
                job = await pool.submit(self._run_job, held, name=self._job_name)
        except trio_pool.PoolClosed:
            return False
        held.job = job
        self._job_ids[job] = held.id
        return True

    def _release_unsubmitted(self) -> None:
        for held in list(self._held.values()):
            if held.verdict is None and held.job is None:
                self._judge(held, Verdict.RELEASE, "", "")

    # ---------------------------------------------------------------- jobs

    async def _run_job(self, held: _Held) -> object:
        """The job: the handler, then hand the entry to the settler."""
        delivery = Delivery(
            payload=held.payload,
            id=held.id,
            stream=self._stream,
            deliveries=held.deliveries,
        )
        try:
            result = await self._handler(delivery)
        except BaseException as exc:
            self._job_ended(held, exc)
            raise
        self._job_ended(held, None)
        return result

    def _job_ended(
        self, held: _Held, error: BaseException | None, *, ran: bool = True
    ) -> None:
        if held.verdict is not None:
            return
        if not ran:
            self._judge(held, Verdict.RELEASE, "", "")
        elif error is None:
            self._judge(held, Verdict.ACK, "", "")
        elif isinstance(error, Exception):
            error_type, message = _describe(error)
            last = held.deliveries >= self._max_deliveries
            self._judge(
                held, Verdict.DEAD if last else Verdict.RETRY, error_type, message
            )
        else:
            # Cancelled: a time limit, our shutdown, or the pool's. The
            # settler asks the job which, once it has ended.
            self._judge(held, Verdict.RETRY, "cancelled", "cancelled")
        self._room.unpark_all()

    def _judge(
        self, held: _Held, verdict: Verdict, error_type: str, error: str
    ) -> None:
        held.verdict = verdict
        held.error_type = error_type
        held.error = error
        self._in_hand -= 1
        self._to_settle.append(held)
        self._settle_wanted.unpark_all()

    # ------------------------------------------------------------ settling

    async def run_settler(self) -> None:
        """The settler task: acknowledge, dead-letter, or leave pending."""
        with self._client.decoding(False):  # fields as the bytes they are
            self._settler_running = True
            try:
                with self._settler_scope:  # cancelled by a shutdown out of time
                    while True:
                        while not self._to_settle:
                            if self._settle_closed:
                                return
                            await self._settle_wanted.park()
                        await self._settle_some()
            finally:
                self._settler_running = False
                self._settled.unpark_all()

    async def _settle_some(self) -> None:
        """Settle every entry queued now; put back those it could not."""
        batch = list(self._to_settle)
        self._to_settle.clear()
        try:
            await self._settle(batch)
        except BaseException:
            held = self._held
            self._to_settle.extendleft(reversed([h for h in batch if h.id in held]))
            raise

    async def _settle(self, batch: list[_Held]) -> None:
        acks = [held for held in batch if held.verdict is Verdict.ACK]
        if acks:
            await self._client.xack(
                self._stream, self._group, [held.id for held in acks]
            )
            self._acked += len(acks)
            self._forget(acks)
        for held in batch:
            if held.verdict is Verdict.ACK:
                continue
            if held.job is not None:
                await self._retrieve(held)
            if held.verdict is Verdict.DEAD:
                await self._move_to_dead_letters(held)
            elif held.verdict is Verdict.RETRY:
                self._failed += 1
                log(
                    DEBUG,
                    "stream consumer %r: entry %s failed (%s: %s) on delivery %d "
                    "of %d; left pending for a retry",
                    self._name,
                    held.id,
                    held.error_type,
                    held.error,
                    held.deliveries,
                    self._max_deliveries,
                )
            else:
                self._released += 1
            self._forget([held])

    async def _retrieve(self, held: _Held) -> None:
        """Take a job's failure (the pool does not warn about it then) and,
        for a cancelled one, tell a time-out (a failure) from a cancellation."""
        job = held.job
        assert job is not None
        await job.wait()
        if held.error_type != "cancelled":
            return
        if job.state is trio_pool.JobState.TIMED_OUT:
            held.error_type = "timeout"
            held.error = f"job {job.name!r} ran past its time limit"
            if held.deliveries >= self._max_deliveries:
                held.verdict = Verdict.DEAD
        else:
            held.verdict = Verdict.RELEASE

    async def _move_to_dead_letters(self, held: _Held) -> None:
        meta = dead_letter_fields(
            source=self._stream,
            source_id=held.id,
            group=self._group,
            consumer=self._name,
            deliveries=held.deliveries,
            error_type=held.error_type,
            error=held.error,
        )
        moved = await _run(
            self._dead_letter,
            [self._stream, self._dead_letter_stream],
            [
                self._group,
                self._name,
                held.id,
                len(meta),
                *meta,
                *(part for pair in held.fields for part in pair),
            ],
        )
        if moved:
            self._dead_lettered += 1
            log(
                WARNING,
                "stream consumer %r: entry %s moved to %r after %d deliveries: %s: %s",
                self._name,
                held.id,
                self._dead_letter_stream,
                held.deliveries,
                held.error_type,
                held.error,
            )
        else:  # another consumer took it over meanwhile: its call
            self._failed += 1

    def _forget(self, settled: Iterable[_Held]) -> None:
        for held in settled:
            del self._held[held.id]
            if held.job is not None:
                self._job_ids.pop(held.job, None)
        self._changes += 1
        self._settled.unpark_all()

    # ------------------------------------------------------------- renewing

    async def run_renewer(self) -> None:
        """The renewer task: keep the entries in hand ours; read pending and lag."""
        with self._client.decoding(False):  # fields as the bytes they are
            interval = self._idle_time / 3
            await self._refresh_group()
            deadline = trio.current_time()
            while True:
                deadline = max(deadline + interval, trio.current_time())
                await trio.sleep_until(deadline)
                ids = list(self._held)
                for start in range(0, len(ids), RENEW_CHUNK):
                    chunk = ids[start : start + RENEW_CHUNK]
                    lost = parse_lost(
                        await _run(
                            self._renew,
                            [self._stream],
                            [self._group, self._name, *chunk],
                        )
                    )
                    for identifier, why in lost:
                        held = self._held.get(identifier)
                        if held is not None and not held.vanished:
                            held.vanished = True
                            self._log_vanished(identifier, why)
                await self._refresh_group()

    def _log_vanished(self, identifier: str, why: str) -> None:
        """Say once what became of an entry that left this consumer's hands."""
        if why == "deleted":
            log(
                INFO,
                "stream consumer %r: entry %s was deleted from the stream (XDEL "
                "or XTRIM) while this consumer held it; its job goes on, and "
                "there is nothing left to acknowledge",
                self._name,
                identifier,
            )
            return
        taker = why.removeprefix("taken:")
        log(
            WARNING,
            "stream consumer %r: entry %s was %s while this consumer held it: "
            "it may be handled twice (is idle_time, %ss, shorter than the pauses "
            "of this process or of its link to Redis?)",
            self._name,
            identifier,
            "acknowledged by another holder"
            if why == "acked"
            else f"taken over by consumer {taker!r}",
            self._idle_time,
        )

    async def _refresh_group(self) -> None:
        info = await self._group_info()
        if info is not None:
            self._pending = _as_int(info.get("pending"))
            self._lag = _as_int(info.get("lag"))

    async def prepare(self, create_group: bool) -> None:
        """Load the scripts (no retry noise on first use); create the group."""
        with self._client.decoding(False):  # fields as the bytes they are
            for script in (CLAIM, RENEW, DEAD_LETTER):
                await self._client.script_load(script)
            if not create_group:
                if await self._group_info() is None:
                    raise LookupError(
                        f"stream {self._stream!r} has no group {self._group!r} "
                        "(and create_group is False)"
                    )
                return
            with contextlib.suppress(StreamDuplicateConsumerGroupError):
                await self._client.xgroup_create(
                    self._stream, self._group, "0", mkstream=True
                )


async def _run(
    script: Script[Any], keys: list[str], args: list[str | bytes | int]
) -> object:
    """Run a Lua script (loaded again if Redis lost it); its raw reply."""
    reply: object = await script(keys, args)  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
    return reply  # pyright: ignore[reportUnknownVariableType]


def _longest_block_ms(client: coredis.Redis[Any]) -> int:
    """The longest blocking read the client's ``stream_timeout`` allows: half of
    it (a read that blocks longer would time out in the client), or a day."""
    pool: object = getattr(client, "connection_pool", None)
    settings: object = getattr(pool, "connection_kwargs", None)
    timeout: object = None
    if isinstance(settings, dict):
        named: dict[object, object] = settings  # pyright: ignore[reportUnknownVariableType]
        timeout = named.get("stream_timeout")
    if isinstance(timeout, (int, float)) and timeout > 0:
        return max(1, int(timeout * 1000 / 2))
    return MAX_BLOCK_MS


def _as_text(value: object) -> str | None:
    return text(value) if isinstance(value, (str, bytes)) else None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, str, bytes)):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _id_key(identifier: str) -> tuple[int, int]:
    milliseconds, _, sequence = identifier.partition("-")
    return int(milliseconds), int(sequence or 0)


@final
class StreamConsumer:
    """A consumer in a Redis consumer group, feeding a `trio_pool.Pool`.

    Made by `open_stream_consumer`, which says what it does. `statistics` and
    `stop` never block; `shutdown` and `wait_drained` are checkpoints.
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

    def stop(self) -> None:
        """Stop taking entries. Never blocks.

        A read on its way is abandoned (whatever Redis delivered to it stays
        pending, for a consumer to reclaim after the idle time). The jobs in
        hand go on, and their entries are acknowledged as they succeed.
        Stopping twice does nothing.
        """
        self._core.stop()

    async def shutdown(self, grace_period: float | None = None) -> None:
        """Stop, let the jobs in hand finish, and settle every entry taken.

        Stops taking entries, waits up to ``grace_period`` seconds (``None``:
        no limit) for the jobs in hand to end, then cancels the rest: their
        entries stay pending, and a consumer reclaims them after the idle
        time. Then it settles the entries whose jobs ended, for at most 5
        seconds: it returns within ``grace_period`` plus those 5 seconds
        (plus the time cancelled jobs take to end) even when Redis does not
        answer, and the entries Redis did not settle in time stay pending
        (counted as released, and logged at WARNING). When it returns every
        entry this consumer took is acknowledged, dead-lettered or pending
        in Redis: nothing is lost. The pool's other jobs are not touched.
        Leaving the ``async with`` calls it too. This is a checkpoint.

        Raises:
            TypeError, ValueError: a bad ``grace_period``.
            coredis.exceptions.RedisError: Redis failed while the entries
                were settled (those not settled stay pending).
        """
        await self._core.shutdown(_check_grace("grace_period", grace_period))

    async def wait_drained(self) -> None:
        """Wait until the group has handled everything in the stream so far.

        Returns once this consumer holds no entry and, in Redis, the group
        has no pending entry (every entry delivered was acknowledged or
        dead-lettered; failed ones waiting for a retry, and entries other
        consumers hold, count as pending) and no entry left to deliver. For
        batch jobs and tests: a live stream may never drain. It asks Redis
        whenever this consumer settles an entry, and every 0.1 seconds (or
        ``idle_time / 2``, if shorter) while others hold entries. This is a
        checkpoint.

        Raises:
            coredis.exceptions.RedisError: Redis failed.
        """
        await self._core.wait_drained()


@asynccontextmanager
async def _opened(
    consumer: StreamConsumer,
    core: ConsumerCore,
    grace_period: float,
    create_group: bool,
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
        rest = group.split(trio.Cancelled)[1]  # pyright: ignore[reportUnknownMemberType]
        if rest is None and body_error is None:
            raise
        if rest is not None:
            if body_error is None or isinstance(body_error, trio.Cancelled):
                raise consumer_error(core.name, rest)  # noqa: B904 (its own cause)
            log(  # the body's own error comes out; say what else went wrong
                WARNING,
                "stream consumer %r failed while its body raised %s",
                core.name,
                type(body_error).__name__,
                exc_info=rest,
            )
    finally:
        if telemetry is not None:
            telemetry.closed()
        log(INFO, "stream consumer %r stopped: %s", core.name, core.statistics())
    if body_error is not None:
        raise body_error


def open_stream_consumer(
    pool: trio_pool.Pool,
    client: coredis.Redis[Any],
    stream: str,
    group: str,
    consumer: str,
    handler: Callable[[Delivery], Awaitable[object]],
    *,
    idle_time: float = 60.0,
    max_deliveries: int = 5,
    dead_letter_stream: str | None = None,
    grace_period: float | None = None,
    create_group: bool = True,
    meter_provider: MeterProvider | None = None,
    telemetry: bool = True,
) -> AbstractAsyncContextManager[StreamConsumer]:
    """Consume ``stream`` as ``consumer`` of ``group``, running ``handler`` in ``pool``.

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
        stream: the stream's key; created, with the group, if missing.
        group: the consumer group; created if missing (from the stream's
            first entry) unless ``create_group`` is false.
        consumer: this consumer's name, unique in the group (the same name
            in two live processes makes them steal each other's entries).
        handler: an async function of one `Delivery`.
        idle_time: seconds an entry may stay unacknowledged, and not renewed,
            before another consumer may take it over: the crash-detection
            delay and the retry delay.
        max_deliveries: how many times an entry may be delivered before it
            goes to the dead-letter stream; an int >= 1.
        dead_letter_stream: the dead letters' stream; ``"{stream}:dead"`` by
            default.
        grace_period: seconds the jobs in hand may take to finish when the
            ``async with`` ends normally (``None``: no limit).
        create_group: create the group (and stream) if missing.
        meter_provider: where the consumer's metrics go; the global provider
            by default.
        telemetry: ``False`` turns the consumer's metrics off.

    Raises:
        TypeError, ValueError: a bad argument, at once.
        LookupError: on entering, with ``create_group=False``, when the
            group does not exist.
        coredis.exceptions.RedisError: on entering (creating the group).
        ConsumerError: out of the ``async with``, when the consumer failed
            while it ran (Redis failed or went away): one exception, a
            ``RedisError``, whose ``__cause__`` is the failure; the entries
            not settled stay pending. An exception of the ``async with``
            body comes out as itself.
    """
    if not isinstance(pool, trio_pool.Pool):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"pool must be a trio_pool.Pool, not {pool!r}")
    _check_name("stream", stream)
    _check_name("group", group)
    _check_name("consumer", consumer)
    _check_handler(handler)
    idle = _check_positive_seconds("idle_time", idle_time)
    if isinstance(max_deliveries, bool) or not isinstance(max_deliveries, int):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"max_deliveries must be an int, not {max_deliveries!r}")
    if max_deliveries < 1:
        raise ValueError(f"max_deliveries must be >= 1, not {max_deliveries!r}")
    dead = f"{stream}:dead" if dead_letter_stream is None else dead_letter_stream
    _check_name("dead_letter_stream", dead)
    if dead == stream:
        raise ValueError("dead_letter_stream must not be the stream itself")
    grace = _check_grace("grace_period", grace_period)
    if not isinstance(telemetry, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"telemetry must be True or False, not {telemetry!r}")
    if not isinstance(create_group, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"create_group must be True or False, not {create_group!r}")
    core: ConsumerCore

    def statistics() -> ConsumerStatistics:
        return core.statistics()

    consumer_telemetry = (
        ConsumerTelemetry(
            pool_name=pool.name,
            stream=stream,
            group=group,
            consumer=consumer,
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
        consumer=consumer,
        handler=handler,
        idle_time=idle,
        max_deliveries=max_deliveries,
        dead_letter_stream=dead,
        telemetry=consumer_telemetry,
    )
    return _opened(StreamConsumer(core), core, grace, create_group)
