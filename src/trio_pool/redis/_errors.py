"""`ConsumerError`: the one exception that ends a running stream consumer."""

from __future__ import annotations

from coredis.exceptions import RedisError

from .._errors import PoolCrashed


class ConsumerError(PoolCrashed, RedisError):
    """The stream consumer stopped on a failure of its own (Redis failed,
    went away, or refused one of its commands).

    It subclasses ``coredis.exceptions.RedisError``, so ``except RedisError``
    catches it, and `trio_pool.PoolCrashed`: it is what the consumer's
    ``async with`` raises in that row of the exit policy (see
    :doc:`/errors`). Its ``__cause__`` is a `BaseExceptionGroup` of the
    failures (and of the body's exception, if it raised one at the same
    time). The entries it had not settled stay pending in Redis: another
    consumer, or this one when it starts again, takes them over after the
    idle time. A handler that raises is not such a failure: its entry is
    retried or dead-lettered.
    """
