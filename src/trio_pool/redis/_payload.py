"""The payload encoding of a job entry, version 1, and its errors.

An entry that `add_job` writes has two fields:

* ``v``: the format version, ``"1"``;
* ``job``: the payload as JSON text (UTF-8, compact, no NaN or infinity).

Other fields are ignored by the consumer and kept in a dead letter. The
functions here are pure: no Redis, no Trio. Field names and values are bytes
as Redis stores them; text (from a client that decodes replies) is turned
back into the same bytes first.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Final

from .._errors import PoolError

if TYPE_CHECKING:
    from collections.abc import Iterable

VERSION_FIELD: Final = "v"
PAYLOAD_FIELD: Final = "job"
VERSION: Final = "1"
_VERSION_KEY: Final = VERSION_FIELD.encode()
_PAYLOAD_KEY: Final = PAYLOAD_FIELD.encode()
_VERSION_VALUE: Final = VERSION.encode()
_SHOWN: Final = 60
"""Bytes of a bad field value quoted in an error message."""


class PayloadError(PoolError, ValueError):
    """An entry's fields are not a job in a format this consumer reads.

    A `trio_pool.PoolError` and a `ValueError`.

    Such an entry can never succeed: the consumer dead-letters it at once,
    without running the handler.
    """


def text(value: str | bytes) -> str:
    """A field name or value as text (clients may or may not decode replies).

    Bytes that are not UTF-8 become lone surrogates (``surrogateescape``):
    `raw` turns the text back into the same bytes.
    """
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    return value


def raw(value: str | bytes) -> bytes:
    """A field name or value as the bytes Redis holds (the inverse of `text`)."""
    if isinstance(value, str):
        return value.encode("utf-8", errors="surrogateescape")
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


def _shown(value: bytes) -> str:
    """A field value for an error message: readable, short, always valid text."""
    shown = value[:_SHOWN].decode("utf-8", errors="backslashreplace")
    return repr(shown + ("…" if len(value) > _SHOWN else ""))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise ValueError(f"{literal[:_SHOWN]!r} is too large for a float")
    return number


_JSON: Final = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_finite_float
)
"""The payload's decoder, made once (``json.loads`` with options makes one
per call)."""


def decode_job(fields: Iterable[tuple[str | bytes, str | bytes]]) -> Any:
    """The payload of an entry written by `add_job`, from its field pairs.

    Fields other than ``v`` and ``job`` are ignored, whatever their bytes;
    of a field given twice, the last counts (as in a client's dict).

    Raises:
        PayloadError: for anything else than a decodable job, and only
            PayloadError: a missing field, another version, a payload that is
            not UTF-8, not JSON, nested too deep, or holding NaN, an infinity
            or a number too large.
    """
    try:
        named = {raw(key): raw(value) for key, value in fields}
    except Exception as exc:  # a pair that is not a pair of str or bytes
        raise _undecodable(exc) from None
    return decode_fields(named)


def decode_fields(named: dict[bytes, bytes]) -> Any:
    """`decode_job` of fields already as bytes (the consumer's reads).

    Raises:
        PayloadError: as `decode_job`.
    """
    try:  # (one call per entry: the checks inline, the errors' text apart)
        version = named.get(_VERSION_KEY)
        body = named.get(_PAYLOAD_KEY)
        if version != _VERSION_VALUE or body is None:
            raise _not_a_job(version)
        body_text = body.decode("utf-8")
        try:  # compact JSON (`add_job`'s) in one call
            payload, end = _JSON.raw_decode(body_text)
            if end == len(body_text):
                return payload
        except ValueError:
            pass  # whitespace before it, or not JSON: the full decode says
        return _JSON.decode(body_text)
    except PayloadError:
        raise
    except UnicodeDecodeError as exc:  # (a ValueError: first)
        raise PayloadError(
            f"the {PAYLOAD_FIELD!r} field is not UTF-8 ({exc.reason} at byte "
            f"{exc.start}): {_shown(exc.object)}"
        ) from None
    except RecursionError:
        raise PayloadError(
            f"the {PAYLOAD_FIELD!r} field is JSON nested too deep to decode"
        ) from None
    except ValueError as exc:
        raise PayloadError(f"the {PAYLOAD_FIELD!r} field is not JSON: {exc}") from None
    except Exception as exc:  # MemoryError: any
        raise _undecodable(exc) from None


def _not_a_job(version: bytes | None) -> PayloadError:
    """Why fields with this ``v`` (or none), or no ``job``, are not a job."""
    if version is None:
        return PayloadError(
            f"the entry has no {VERSION_FIELD!r} field: it was not written by add_job"
        )
    if version != _VERSION_VALUE:
        return PayloadError(
            f"payload version {_shown(version)} is not supported (this consumer "
            f"reads version {VERSION!r})"
        )
    return PayloadError(f"the entry has no {PAYLOAD_FIELD!r} field")


def _undecodable(error: Exception) -> PayloadError:
    return PayloadError(f"the entry cannot be decoded: {type(error).__name__}: {error}")
