"""Entries nobody can decode, and errors nobody can print, against a real
redis-server (the session's own): each ends dead-lettered, alone, with its
bytes kept; the consumer and the rest of the batch go on."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import coredis
import pytest
import trio
from coredis.response.types import StreamPending

from trio_pool.redis import Delivery, PayloadError, decode_dead_letter

from .redis_server import RedisServer, consumer_until_drained

IDLE = 10.0
"""An idle time no pause of a loaded machine reaches: nothing is reclaimed."""
ADD = "return redis.call('XADD', KEYS[1], '*', unpack(ARGV))"
"""XADD with the exact bytes given, field names given twice included."""


@pytest.fixture(params=[False, True], ids=["bytes-client", "text-client"])
async def client(
    redis_server: RedisServer, request: pytest.FixtureRequest
) -> AsyncIterator[coredis.Redis[Any]]:
    async with coredis.Redis(
        host=redis_server.host, port=redis_server.port, decode_responses=request.param
    ) as client:
        yield client


async def add_raw(client: coredis.Redis[Any], stream: str, *flat: bytes) -> str:
    identifier = await client.eval(ADD, keys=[stream], args=list(flat))
    return identifier.decode() if isinstance(identifier, bytes) else str(identifier)


async def dead_letters(
    client: coredis.Redis[Any], stream: str
) -> dict[str, tuple[list[bytes], Any]]:
    """Source id -> (the dead letter's flat fields as bytes, decoded letter)."""
    with client.decoding(False):
        replies = await client.eval(
            "return redis.call('XRANGE', KEYS[1], '-', '+')",
            keys=[f"{stream}:dead"],
            args=[],
        )
        entries = await client.xrange(f"{stream}:dead", "-", "+")
    assert isinstance(replies, list)
    found: dict[str, tuple[list[bytes], Any]] = {}
    for (_identifier, flat), entry in zip(replies, entries, strict=True):
        letter = decode_dead_letter(entry.identifier, entry.field_values)
        found[letter.source_id] = (list(flat), letter)
    return found


NESTED = b"[" * 100_000 + b"]" * 100_000
BAD: list[tuple[bytes, ...]] = [
    (b"v", b"1", b"job", b"\xff"),  # the payload is not UTF-8
    (b"v", b"\xff", b"job", b"1"),  # nor the version
    (b"v", b"1", b"job", NESTED),  # RecursionError in json.loads
    (b"v", b"1", b"job", b"1e999"),  # a float too large: infinity
    (b"v", b"1", b"job", b"[NaN]"),
    (b"v", b"1", b"job", b'"\xc3'),  # a truncated UTF-8 sequence
    (b"v", b"1", b"job", b"4", b"job", b"\xfe["),  # the last of two counts
    (b"v", b"1 ", b"job", b"1"),
    (b"\xff\xfe", b"\x00\xff"),  # no v at all, and not text
]
GOOD: list[tuple[tuple[bytes, ...], Any]] = [
    ((b"v", b"1", b"job", b"0"), 0),
    ((b"\xfe\xff", b"\xff", b"v", b"1", b"job", b"1"), 1),  # ignored field
    ((b"v", b"1", b"job", b"\xff", b"job", b"2"), 2),  # the last of two counts
    ((b"v", b"1", b"job", '{"é":"\U0001f600"}'.encode()), {"é": "\U0001f600"}),
    ((b"v", b"1", b"job", b"[" * 50 + b"]" * 50), json.loads("[" * 50 + "]" * 50)),
]


async def test_undecodable_entries_are_dead_lettered_alone_with_their_bytes(
    client: coredis.Redis[Any], stream: str
) -> None:
    handled: list[Any] = []

    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()
        handled.append(delivery.payload)

    bad_ids: dict[str, tuple[bytes, ...]] = {}
    good_ids: list[str] = []
    for position in range(max(len(BAD), len(GOOD))):  # one batch, interleaved
        if position < len(BAD):
            bad_ids[await add_raw(client, stream, *BAD[position])] = BAD[position]
        if position < len(GOOD):
            good_ids.append(await add_raw(client, stream, *GOOD[position][0]))
    async with consumer_until_drained(
        client, handler, stream=stream, workers=32, idle_time=IDLE
    ) as consumer:
        pass  # it drains the stream as the block ends
    stats = consumer.statistics()
    assert (stats.read, stats.in_hand, stats.settling) == (len(BAD) + len(GOOD), 0, 0)
    assert (stats.dead_lettered, stats.acked) == (len(BAD), len(GOOD))
    assert len(handled) == len(GOOD)
    for _fields, payload in GOOD:
        assert payload in handled
    letters = await dead_letters(client, stream)
    assert set(letters) == set(bad_ids)
    for source_id, (flat, letter) in letters.items():
        own = bad_ids[source_id]
        assert tuple(flat[: len(own)]) == own  # byte for byte, twice-given too
        assert flat[len(own)].startswith(b"dead_letter.")
        assert letter.error_type == "PayloadError"
        assert letter.deliveries == 1
        with pytest.raises(PayloadError):
            letter.payload  # noqa: B018
    assert "not UTF-8" in letters[next(iter(bad_ids))][1].error
    summary = await client.xpending(stream, "group")
    assert isinstance(summary, StreamPending)
    assert summary.pending == 0


async def test_a_good_entry_of_a_dead_letter_is_requeued_from_its_raw_fields(
    client: coredis.Redis[Any], stream: str
) -> None:
    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()

    await add_raw(client, stream, b"v", b"1", b"job", b"\xff\xfe", b"note", b"\xfa")
    async with consumer_until_drained(client, handler, stream=stream, idle_time=IDLE):
        pass  # it drains the stream as the block ends
    ((_flat, letter),) = (await dead_letters(client, stream)).values()
    assert letter.raw_fields == (
        (b"v", b"1"),
        (b"job", b"\xff\xfe"),
        (b"note", b"\xfa"),
    )
    assert dict(letter.fields)["job"] == b"\xff\xfe".decode("utf-8", "surrogateescape")


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


@pytest.mark.parametrize(
    "error",
    [ValueError("lone \udcff surrogate"), Unprintable()],
    ids=["surrogate-message", "raising-str"],
)
async def test_a_handler_error_that_cannot_be_written_is_dead_lettered(
    client: coredis.Redis[Any], stream: str, error: Exception
) -> None:
    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()
        if delivery.payload == "bad":
            raise error

    await add_raw(client, stream, b"v", b"1", b"job", b'"bad"')
    await add_raw(client, stream, b"v", b"1", b"job", b'"good"')
    async with consumer_until_drained(
        client, handler, stream=stream, idle_time=IDLE, max_deliveries=1
    ) as consumer:
        pass  # it drains the stream as the block ends
    assert (consumer.statistics().acked, consumer.statistics().dead_lettered) == (1, 1)
    ((_flat, letter),) = (await dead_letters(client, stream)).values()
    assert letter.error_type == type(error).__qualname__
    assert letter.payload == "bad"


async def test_an_entry_of_thousands_of_fields_is_dead_lettered_whole(
    client: coredis.Redis[Any], stream: str
) -> None:
    """Past Lua's unpack limit (8,000 values): the dead-letter script failed,
    and the consumer with it."""

    async def handler(delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint()

    fields = {b"v": b"1", b"job": b"\xff"} | {
        f"field{number}".encode(): str(number).encode() for number in range(5000)
    }
    identifier = await client.xadd(stream, fields)
    source_id = identifier.decode() if isinstance(identifier, bytes) else identifier
    async with consumer_until_drained(
        client, handler, stream=stream, idle_time=IDLE
    ) as consumer:
        pass  # it drains the stream as the block ends
    assert consumer.statistics().dead_lettered == 1
    ((flat, letter),) = (await dead_letters(client, stream)).values()
    assert letter.source_id == source_id
    assert letter.error_type == "PayloadError"
    assert tuple(flat[: 2 * len(fields)]) == tuple(
        part for pair in fields.items() for part in pair
    )
