"""Small helpers for the consumer's Redis calls and replies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ._payload import text

if TYPE_CHECKING:
    import coredis
    from coredis.commands.script import Script

FIRST_ID: Final = "0-0"
MAX_BLOCK_MS: Final = 86_400_000
"""The longest blocking read of a client without a ``stream_timeout``."""


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
