"""`ConsumerCore`: one consumer's parts together, and its lifecycle (stop,
shutdown with a bounded settle, drain, prepare); `StreamConsumer` is its facade."""

from __future__ import annotations

import contextlib
from typing import Final, Literal, final

import trio
from coredis.exceptions import StreamDuplicateConsumerGroupError

import trio_pool

from .._log import WARNING, log
from ._ledger import Verdict
from ._payload import text
from ._reader import ReaderMixin
from ._redis_calls import FIRST_ID, as_int, as_text, id_key
from ._renewer import RenewerMixin
from ._scripts import CLAIM, DEAD_LETTER, RENEW
from ._settler import SettlerMixin

CreateGroup = Literal["new", "start"]
"""Where `open_stream_consumer` creates a missing group (``create_group=``)."""
CREATE_GROUP: Final[dict[CreateGroup | None, str | None]] = {
    None: None,  # a missing group is an error
    "new": "$",  # entries added from now on
    "start": "0",  # the stream's whole history
}
"""The first id a created group delivers after, for each ``create_group``."""
DRAIN_POLL: Final = 0.1
"""Seconds between questions to Redis in `StreamConsumer.join` while
other consumers hold entries (their acknowledgements tell this one nothing)."""
SETTLE_LIMIT: Final = 5.0
"""Seconds a stopping consumer may spend settling (acknowledging,
dead-lettering) the entries whose jobs ended, after the grace period: what
Redis has not taken by then stays pending."""


@final
class ConsumerCore(ReaderMixin, SettlerMixin, RenewerMixin):
    """The state of one consumer and its tasks; `StreamConsumer` is its facade."""

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
                await self._refresh_group()  # the final statistics' pending, lag
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
        in_hand = {
            held.job: held
            for held in self._held.values()
            if held.verdict is None and held.job is not None
        }
        async with trio_pool.as_completed(in_hand) as finished:
            async for job in finished:
                held = in_hand[job]
                if held.verdict is None:
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
        """Whether the group has nothing pending and nothing left to deliver:
        one call while Redis knows the group's lag (Redis 7), two otherwise."""
        info = await self._group_info()
        if info is None or info.get("pending") != 0:
            return False
        lag = as_int(info.get("lag"))
        if lag is not None:
            return lag == 0
        newest = await self._redis.call(
            lambda: self._client.xrevrange(self._stream, "+", "-", count=1)
        )
        newest_id = text(newest[0].identifier) if newest else FIRST_ID
        last_delivered = as_text(info.get("last-delivered-id")) or FIRST_ID
        return id_key(newest_id) <= id_key(last_delivered)

    async def prepare(self, create_group: CreateGroup | None) -> None:
        """Load the scripts (no retry noise on first use); check the group, or
        create it where ``create_group`` says if it is missing."""
        with self._client.decoding(False):  # fields as the bytes they are
            for script in (CLAIM, RENEW, DEAD_LETTER):
                await self._client.script_load(script)
            first = CREATE_GROUP[create_group]
            if first is None:
                if (
                    not await self._client.exists([self._stream])
                    or await self._group_info() is None
                ):
                    raise LookupError(
                        f"stream {self._stream!r} has no consumer group "
                        f"{self._group!r}; pass create_group='new' (entries "
                        "added from now on) or create_group='start' (the "
                        "stream's whole history) to create it"
                    )
                return
            with contextlib.suppress(StreamDuplicateConsumerGroupError):
                await self._client.xgroup_create(
                    self._stream, self._group, first, mkstream=True
                )
