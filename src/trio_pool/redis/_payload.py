"""The payload encoding of a job entry, version 1, and its errors.

An entry that `add_job` writes has two fields:

* ``v``: the format version, ``"1"``;
* ``job``: the payload as JSON text (UTF-8, compact, no NaN or infinity).

Other fields are ignored by the consumer and kept in a dead letter. The
functions here are pure: no Redis, no Trio.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Mapping

VERSION_FIELD: Final = "v"
PAYLOAD_FIELD: Final = "job"
VERSION: Final = "1"


class PayloadError(ValueError):
    """An entry's fields are not a job in a format this consumer reads.

    Such an entry can never succeed: the consumer dead-letters it at once,
    without running the handler.
    """


def text(value: str | bytes) -> str:
    """A field name or value as text (clients may or may not decode replies)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    return value


def encode_job(payload: Any) -> dict[str, str]:
    """The fields of an entry carrying ``payload``.

    Raises:
        TypeError, ValueError: ``payload`` is not JSON-serialisable (NaN and
            infinities included).
    """
    body = json.dumps(
        payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return {VERSION_FIELD: VERSION, PAYLOAD_FIELD: body}


def decode_job(fields: Mapping[str, str]) -> Any:
    """The payload of an entry written by `add_job` (fields already text).

    Raises:
        PayloadError: a field is missing, the version is not ``"1"``, or the
            payload is not JSON.
    """
    version = fields.get(VERSION_FIELD)
    if version is None:
        raise PayloadError(
            f"the entry has no {VERSION_FIELD!r} field: it was not written by add_job"
        )
    if version != VERSION:
        raise PayloadError(
            f"payload version {version!r} is not supported (this consumer reads "
            f"version {VERSION!r})"
        )
    body = fields.get(PAYLOAD_FIELD)
    if body is None:
        raise PayloadError(f"the entry has no {PAYLOAD_FIELD!r} field")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise PayloadError(f"the {PAYLOAD_FIELD!r} field is not JSON: {exc}") from None
