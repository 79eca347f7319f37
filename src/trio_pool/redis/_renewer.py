"""The renewer: resets the idle time of the entries in hand every
``idle_time / 3`` seconds, so that no consumer reclaims an entry whose job is
merely long or queued; says once what became of an entry that left its hands;
reads the group's pending count and lag."""

from __future__ import annotations

from typing import Final

import trio

from .._log import INFO, WARNING, log
from ._ledger import ConsumerState
from ._redis_calls import as_int, run_script
from ._scripts import parse_lost

RENEW_CHUNK: Final = 500
"""Entries per call of the renew script (each call blocks Redis briefly)."""


class RenewerMixin(ConsumerState):
    """The renewer task."""

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
                    lost = await self._renew_ids(chunk)
                    for identifier, why in lost:
                        held = self._held.get(identifier)
                        if held is not None and not held.vanished:
                            held.vanished = True
                            self._log_vanished(identifier, why)
                await self._refresh_group()

    async def _renew_ids(self, ids: list[str]) -> list[tuple[str, str]]:
        """Renew the entries ``ids`` (up to `RENEW_CHUNK`) that are still ours,
        their delivery counts set back to what they were when this consumer
        took them; (id, why) of each that is not ours any more."""
        arguments: list[str | bytes | int] = [self._group, self._name]
        for identifier in ids:
            held = self._held.get(identifier)
            if held is not None:  # not settled meanwhile
                arguments += [identifier, held.deliveries]
        if len(arguments) == 2:  # all settled meanwhile
            return []
        reply = await self._redis.call(
            lambda: run_script(self._renew, [self._stream], arguments)
        )
        return parse_lost(reply)

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
            self._pending = as_int(info.get("pending"))
            self._lag = as_int(info.get("lag"))
