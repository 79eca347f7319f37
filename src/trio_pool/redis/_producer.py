"""`add_job` and `add_jobs`: write jobs to a stream in the consumer's format."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._payload import encode_job, text

if TYPE_CHECKING:
    from collections.abc import Iterable

    import coredis


async def add_job(client: coredis.Redis[Any], stream: str, payload: Any) -> str:
    """Append a job to ``stream``, and return its entry id.

    The entry has two fields: ``v`` (the format version, ``"1"``) and
    ``job`` (``payload`` as JSON text). This is a checkpoint (one round trip).

    Raises:
        TypeError, ValueError: ``payload`` is not JSON-serialisable, before
            anything is sent.
        coredis.exceptions.RedisError: Redis refused or failed.
    """
    fields = encode_job(payload)
    identifier = await client.xadd(stream, fields)
    assert identifier is not None  # None only with nomkstream
    return text(identifier)


async def add_jobs(
    client: coredis.Redis[Any], stream: str, payloads: Iterable[Any]
) -> tuple[str, ...]:
    """Append several jobs to ``stream`` in one round trip; return their ids.

    Every payload is encoded before anything is sent, so a payload that is
    not JSON-serialisable adds none of them. The entries are added in order,
    in one pipeline (not a transaction: a reader may see the first ones
    before the last are added).

    Raises:
        TypeError, ValueError: a payload is not JSON-serialisable.
        coredis.exceptions.RedisError: Redis refused or failed.
    """
    encoded = [encode_job(payload) for payload in payloads]
    if not encoded:
        return ()
    async with client.pipeline(transaction=False) as pipe:
        requests = [pipe.xadd(stream, fields) for fields in encoded]
    identifiers: list[str] = []
    for request in requests:
        identifier = await request
        assert identifier is not None
        identifiers.append(text(identifier))
    return tuple(identifiers)
