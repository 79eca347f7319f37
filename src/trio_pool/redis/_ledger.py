"""The books of a stream consumer: what it holds, each entry's verdict, counts.

Every entry taken is in exactly one place: in hand (``_held``, no verdict),
settling (a verdict, queued for the settler), or counted as acked, failed,
dead-lettered or released.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import TYPE_CHECKING, Any, final

import trio

import trio_pool

from ._payload import PayloadError, decode_fields, text
from ._redis_calls import Reconnector, as_text, longest_block_ms
from ._scripts import CLAIM, DEAD_LETTER, RENEW
from ._statistics import ConsumerStatistics

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Iterable

    import coredis
    from coredis.commands.script import Script

    from ._delivery import Delivery
    from ._telemetry import ConsumerTelemetry


class Verdict(enum.Enum):
    """What the settler does with an entry."""

    ACK = "ack"
    RETRY = "retry"  # left pending; counted as failed
    DEAD = "dead"
    RELEASE = "release"  # left pending; counted as released


@final
class Held:
    """An entry this consumer took, until it is settled."""

    __slots__ = (
        "deliveries",
        "error",
        "error_type",
        "fields",
        "id",
        "job",
        "payload",
        "payload_error",
        "vanished",
        "verdict",
    )

    id: str
    fields: Collection[tuple[bytes, bytes]]  # (a dict's items: no copy)
    deliveries: int
    payload: Any
    payload_error: str | None  # why the payload cannot be decoded
    job: trio_pool.Job[object] | None
    verdict: Verdict | None
    error_type: str
    error: str
    vanished: bool

    def __init__(
        self,
        identifier: str,
        fields: Collection[tuple[bytes, bytes]],
        deliveries: int,
        named: dict[bytes, bytes] | None = None,
    ) -> None:
        """``named``: ``fields`` as a dict, if the caller has it already."""
        self.id = identifier
        self.fields = fields
        self.deliveries = deliveries
        try:  # decoded at once: one pass over a batch read
            self.payload = decode_fields(dict(fields) if named is None else named)
            self.payload_error = None
        except PayloadError as exc:
            self.payload = None
            self.payload_error = str(exc)
        self.job = None
        self.verdict = None
        self.error_type = ""
        self.error = ""
        self.vanished = False  # deleted or taken over while in hand (logged)


def describe(error: BaseException) -> tuple[str, str]:
    """(error type, message) of a job's error, as a dead letter records them."""
    if isinstance(error, trio_pool.JobTimeout):
        return "timeout", error_message(error)
    return type(error).__qualname__, error_message(error)


def error_message(error: BaseException) -> str:
    """The error's message, even when its ``__str__`` raises."""
    try:
        return str(error) or repr(error)
    except Exception:
        return f"<{type(error).__qualname__} whose str() raised>"


class ConsumerState:
    """The books and settings of one consumer, shared by its parts (the reader,
    the settler, the renewer and the lifecycle of `ConsumerCore`)."""

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
        reconnect_timeout: float,
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
        self._longest_block_ms = longest_block_ms(client)
        self._max_deliveries = max_deliveries
        self._dead_letter_stream = dead_letter_stream
        self.telemetry = telemetry
        self._redis = Reconnector(consumer, reconnect_timeout)
        self._claim: Script[Any] = client.register_script(CLAIM)
        self._renew: Script[Any] = client.register_script(RENEW)
        self._dead_letter: Script[Any] = client.register_script(DEAD_LETTER)
        # The books.
        self._held: dict[str, Held] = {}
        self._in_hand: int = 0
        self._read: int = 0
        self._reclaimed: int = 0
        self._acked: int = 0
        self._failed: int = 0
        self._timed_out: int = 0
        self._dead_lettered: int = 0
        self._released: int = 0
        self._pending: int | None = None
        self._lag: int | None = None
        self._reading = False
        self._pool_capacity = 0  # the pool's capacity at the latest look
        # Wake-ups.
        self._to_settle: deque[Held] = deque()
        self._settle_wanted = trio.lowlevel.ParkingLot()
        self._settled = trio.lowlevel.ParkingLot()
        self._changes: int = 0  # bumped whenever an entry is taken or settled
        self._settle_closed = False
        self._settler_running = False
        self._settler_scope = trio.CancelScope()
        self._reader_scope = trio.CancelScope()
        self._stopping = False  # stop() was called
        self._reader_in_redis = False  # the reader waits for Redis's reply
        # The reader acknowledges the entries whose jobs succeeded with its
        # next read (it waits for room, which their jobs' ends make): the
        # settler leaves them to it, for up to `ACK_RIDE_LIMIT` seconds.
        self._acks_ride = False
        self._reads_with_acks = 0  # reads that took the acknowledgements queued
        self._settler_riding = False  # the settler waits out a ride's time limit
        # While the reader's claim call is on its way: the entries settled
        # meanwhile, and their delivery counts (the claim may return them).
        self._settled_during_claim: dict[str, int] | None = None
        self._stopped = trio.Event()  # the reader has returned

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
            timed_out=self._timed_out,
            dead_lettered=self._dead_lettered,
            released=self._released,
            pending=self._pending,
            lag=self._lag,
            closed=not self._reading,
        )

    def _judge(self, held: Held, verdict: Verdict, error_type: str, error: str) -> None:
        held.verdict = verdict
        held.error_type = error_type
        held.error = error
        self._in_hand -= 1
        self._to_settle.append(held)
        if (  # does the settler have work (if it waits)?
            verdict is not Verdict.ACK
            or not self._acks_ride
            or not self._settler_riding  # it starts the ride's time limit
        ) and self._settle_wanted:
            self._settle_wanted.unpark_all()

    def _acks_wait_for_reader(self) -> bool:
        """Whether everything to settle is an acknowledgement the reader
        takes with its next read."""
        return (
            self._acks_ride
            and not self._settle_closed
            and all(held.verdict is Verdict.ACK for held in self._to_settle)
        )

    def _give_back(self, acks: list[Held]) -> None:
        """Queue again acknowledgements the reader could not make."""
        if acks:
            self._to_settle.extendleft(reversed(acks))
            self._settle_wanted.unpark_all()

    def _forget(self, settled: Iterable[Held]) -> None:
        held_by_id = self._held
        during_claim = self._settled_during_claim
        for held in settled:
            del held_by_id[held.id]
            if during_claim is not None:
                during_claim[held.id] = held.deliveries
        self._changes += 1
        if not self._held:  # `StreamConsumer.join` waits for nothing held
            self._settled.unpark_all()

    async def _group_info(self) -> dict[str, object] | None:
        """The group's line of ``XINFO GROUPS``, keys as text; None if missing."""
        lines = await self._redis.call(lambda: self._client.xinfo_groups(self._stream))
        for line in lines:
            info: dict[str, object] = {text(key): value for key, value in line.items()}
            if as_text(info.get("name")) == self._group:
                return info
        return None
