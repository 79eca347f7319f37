"""What a handler receives (`Delivery`) and what a dead letter holds (`DeadLetter`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, final

import attrs

from ._payload import PayloadError, decode_job, raw, text

if TYPE_CHECKING:
    from collections.abc import Mapping

DEAD_LETTER_PREFIX: Final = "dead_letter."
"""The prefix of the fields a dead letter adds to the source entry's own."""

SOURCE: Final = DEAD_LETTER_PREFIX + "source"
SOURCE_ID: Final = DEAD_LETTER_PREFIX + "id"
GROUP: Final = DEAD_LETTER_PREFIX + "group"
CONSUMER: Final = DEAD_LETTER_PREFIX + "consumer"
DELIVERIES: Final = DEAD_LETTER_PREFIX + "deliveries"
ERROR_TYPE: Final = DEAD_LETTER_PREFIX + "error_type"
ERROR: Final = DEAD_LETTER_PREFIX + "error"


@final
@attrs.frozen
class Delivery:
    """One delivery of a stream entry to the handler.

    The same entry may be delivered more than once (at-least-once): use `id`
    to make the handler idempotent.
    """

    payload: Any
    """The job's payload, decoded from JSON."""
    id: str
    """The entry's id in the stream, e.g. ``"1718000000000-0"``: unique and
    stable across deliveries."""
    stream: str
    """The stream's key."""
    deliveries: int
    """How many times the entry has been delivered to the group, this time
    included: 1 the first time, more after a failure or a crash."""


@final
@attrs.frozen
class DeadLetter:
    """An entry of a dead-letter stream, decoded by `decode_dead_letter`."""

    id: str
    """The dead letter's own id (in the dead-letter stream)."""
    source: str
    """The stream the entry came from."""
    source_id: str
    """The entry's id in that stream."""
    group: str
    """The consumer group that gave up on it."""
    consumer: str
    """The consumer that dead-lettered it."""
    deliveries: int
    """How many times it was delivered."""
    error_type: str
    """The last error's class name; ``timeout`` when its last job ran out of
    time; ``delivery_limit`` when it was taken ``max_deliveries`` times
    without an acknowledgement (its consumers crashed or stopped)."""
    error: str
    """The last error's message."""
    fields: tuple[tuple[str, str], ...]
    """The source entry's own fields, as text (``v`` and ``job`` for an
    entry written by `add_job`): add them to the source stream again to
    retry it. Bytes that are not UTF-8 are lone surrogates here
    (``surrogateescape``); `raw_fields` has them as they are."""
    raw_fields: tuple[tuple[bytes, bytes], ...]
    """The same fields as the bytes Redis holds, exactly the source entry's
    whatever they are (field names given twice included)."""

    @property
    def payload(self) -> Any:
        """The decoded payload.

        Raises:
            PayloadError: the entry is not in a format the consumer reads
                (often the very reason it was dead-lettered).
        """
        return decode_job(self.raw_fields)


def decode_dead_letter(
    identifier: str | bytes,
    fields: Mapping[str, str]
    | Mapping[bytes, bytes]
    | Mapping[str | bytes, str | bytes],
) -> DeadLetter:
    """Decode an entry read from a dead-letter stream.

    Args:
        identifier: the entry's id.
        fields: its fields, as a client returns them (text or bytes).

    Raises:
        PayloadError: it is not a dead letter written by a consumer.
    """
    named = {text(key): text(value) for key, value in fields.items()}
    own = tuple(
        (raw(key), raw(value))
        for key, value in fields.items()
        if not text(key).startswith(DEAD_LETTER_PREFIX)
    )
    try:
        deliveries = int(named[DELIVERIES])
        return DeadLetter(
            id=text(identifier),
            source=named[SOURCE],
            source_id=named[SOURCE_ID],
            group=named[GROUP],
            consumer=named[CONSUMER],
            deliveries=deliveries,
            error_type=named[ERROR_TYPE],
            error=named[ERROR],
            fields=tuple(
                (key, value)
                for key, value in named.items()
                if not key.startswith(DEAD_LETTER_PREFIX)
            ),
            raw_fields=own,
        )
    except (KeyError, ValueError) as exc:
        raise PayloadError(f"not a dead letter: {exc!r} in {named!r}") from None


def dead_letter_fields(
    *,
    source: str,
    source_id: str,
    group: str,
    consumer: str,
    deliveries: int,
    error_type: str,
    error: str,
) -> list[bytes]:
    """The flat field/value list of a dead letter's ``dead_letter.*`` fields.

    Text that cannot be UTF-8 (lone surrogates in an error message) is
    written with backslash escapes: a dead letter never fails to encode.
    """
    values = (
        (SOURCE, source),
        (SOURCE_ID, source_id),
        (GROUP, group),
        (CONSUMER, consumer),
        (DELIVERIES, str(deliveries)),
        (ERROR_TYPE, error_type),
        (ERROR, error),
    )
    flat: list[bytes] = []
    for key, value in values:
        flat += (key.encode(), value.encode("utf-8", errors="backslashreplace"))
    return flat
