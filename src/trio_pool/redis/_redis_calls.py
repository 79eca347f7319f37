"""Small helpers for the consumer's Redis calls and replies, and `Reconnector`:
the retries of those calls while Redis is away."""

from __future__ import annotations

import math
import random
import traceback
from typing import TYPE_CHECKING, Any, Final, TypeVar, final

import trio
from coredis.exceptions import ConnectionError as RedisConnectionError

from .._log import WARNING, log
from ._payload import text

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import coredis
    from coredis.commands.script import Script

_T = TypeVar("_T")

FIRST_ID: Final = "0-0"
MAX_BLOCK_MS: Final = 86_400_000
"""The longest blocking read of a client without a ``stream_timeout``."""
RETRY_FIRST: Final = 0.1
"""Seconds before the first retry of a Redis call that found Redis away."""
RETRY_CAP: Final = 5.0
"""The longest pause between two retries (the pause doubles up to it, and
each is jittered down by up to half, so that consumers do not retry in step)."""
RETRYABLE: Final = (RedisConnectionError, TimeoutError)
"""What a Redis call raises when Redis is away, restarting (its ``LOADING``
reply is a ``BusyLoadingError``, a ``ConnectionError``), slower than the
client's ``stream_timeout``, or when the client's pool has no free slot
within its ``timeout``: retried. Other errors are not."""


async def run_script(
    script: Script[Any], keys: list[str], args: list[str | bytes | int]
) -> object:
    """Run a Lua script (loaded again if Redis lost it); its raw reply."""
    reply: object = await script(keys, args)  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
    return reply  # pyright: ignore[reportUnknownVariableType]


def longest_block_ms(client: coredis.Redis[Any]) -> int:
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


def waited_for_a_connection(error: TimeoutError) -> bool:
    """Whether ``error`` is the client's connection pool giving up waiting for
    a free slot (its ``timeout``), not a reply later than ``stream_timeout``.

    coredis raises a bare `TimeoutError` for both; the pool's comes from code
    of ``coredis.pool`` (``get_connection``), the late reply's from the
    request. A pool out of slots (coredis 6.9 loses one per command on its
    way when Redis drops a connection) answers nothing, ever: an outage.
    """
    return any(
        str(frame.f_globals.get("__name__", "")).startswith("coredis.pool")
        for frame, _line in traceback.walk_tb(error.__traceback__)
    )


def describe_failure(error: Exception) -> str:
    """``error`` for a log line: its type and message, or what a slot wait
    that timed out means (coredis raises it without a message)."""
    if isinstance(error, TimeoutError) and waited_for_a_connection(error):
        return "TimeoutError: no free connection in the client's pool in time"
    return f"{type(error).__name__}: {error}"


def as_text(value: object) -> str | None:
    return text(value) if isinstance(value, (str, bytes)) else None


def as_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, str, bytes)):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def id_key(identifier: str) -> tuple[int, int]:
    milliseconds, _, sequence = identifier.partition("-")
    return int(milliseconds), int(sequence or 0)


@final
class Reconnector:
    """Retries a consumer's Redis calls while Redis is away.

    Shared by the consumer's tasks: the time Redis has been away counts from
    the first failure of any of them, until any call succeeds again; once it
    reaches ``give_up_after`` seconds the failing call raises its error. The
    pauses between retries double from `RETRY_FIRST` up to `RETRY_CAP`, each
    jittered, and each is logged at WARNING.
    """

    def __init__(self, consumer: str, give_up_after: float) -> None:
        self._consumer = consumer
        self._give_up_after = give_up_after
        self._away_since: float | None = None

    async def call(self, command: Callable[[], Awaitable[_T]]) -> _T:
        """``await command()``, again after a pause while it finds Redis away."""
        failures = 0
        while True:
            try:
                result = await command()
            except RETRYABLE as error:
                failures += 1
                await self._pause(error, failures)
                continue
            if self._away_since is not None:
                log(
                    WARNING,
                    "stream consumer %r: Redis answers again after %.1fs",
                    self._consumer,
                    trio.current_time() - self._away_since,
                )
                self._away_since = None
            return result

    async def _pause(self, error: Exception, failures: int) -> None:
        """Wait before the next retry; raise ``error`` once it is time to give up."""
        now = trio.current_time()
        if self._away_since is None:
            self._away_since = now
        left = self._away_since + self._give_up_after - now
        if left <= 0:
            raise error
        pause = min(RETRY_CAP, RETRY_FIRST * 2 ** min(failures - 1, 32))
        pause = min(left, pause * (0.5 + random.random() / 2))  # jitter
        log(
            WARNING,
            "stream consumer %r: Redis failed (%s); retrying in %.2fs (%s)",
            self._consumer,
            describe_failure(error),
            pause,
            "it never gives up"
            if math.isinf(self._give_up_after)
            else f"it gives up after {self._give_up_after}s without Redis",
        )
        await trio.sleep(pause)
