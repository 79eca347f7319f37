"""`ConsumerError`: the one exception that ends a running stream consumer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from coredis.exceptions import RedisError

from .._errors import leaves

if TYPE_CHECKING:
    import sys

    if sys.version_info < (3, 11):
        from exceptiongroup import BaseExceptionGroup

_MORE: Final = "; and {} more"


class ConsumerError(RedisError):
    """The stream consumer stopped on a failure of its own (Redis failed,
    went away, or refused one of its commands).

    It subclasses ``coredis.exceptions.RedisError``, so ``except RedisError``
    catches it; its ``__cause__`` is the failure itself (an exception group
    when several of the consumer's tasks failed at once). The entries it had
    not settled stay pending in Redis: another consumer, or this one when it
    starts again, takes them over after the idle time. A handler that raises
    is not such a failure: its entry is retried or dead-lettered.
    """


def consumer_error(
    consumer: str, failures: BaseExceptionGroup[BaseException]
) -> BaseException:
    """The exception to raise for the failures of a consumer's tasks.

    A `ConsumerError` chained to the failure (or to the group, when there
    are several); a ``KeyboardInterrupt`` or another ``BaseException`` that
    is not an ``Exception`` comes out as itself.
    """
    found = leaves(failures)
    for error in found:
        if not isinstance(error, Exception):
            return error
    first = found[0]
    message = f"stream consumer {consumer!r} failed: {type(first).__name__}: {first}"
    if len(found) > 1:
        message += _MORE.format(len(found) - 1)
    error = ConsumerError(message)
    error.__cause__ = first if len(found) == 1 else failures
    return error
