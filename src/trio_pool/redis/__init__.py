"""trio_pool.redis: a pool that consumes a Redis stream.

Install it with ``pip install '.[redis]'`` from a checkout.

A consumer in a Redis consumer group reads only as many entries as a
`trio_pool.Pool` has room for, runs a handler on each in the pool,
acknowledges an entry after its job succeeded, reclaims the entries of
consumers that crashed, and dead-letters an entry after too many deliveries.
Built on coredis; ``import trio_pool`` alone never imports it.
"""

from __future__ import annotations

import importlib.util as _importlib_util

if _importlib_util.find_spec("coredis") is None:  # pragma: no cover
    raise ImportError(
        "trio_pool.redis needs coredis: pip install '.[redis]' in a checkout "
        "of trio_pool (or pip install 'coredis>=6.9,<7')"
    )

from ._consumer import StreamConsumer as StreamConsumer
from ._consumer import open_stream_consumer as open_stream_consumer
from ._delivery import DeadLetter as DeadLetter
from ._delivery import Delivery as Delivery
from ._delivery import decode_dead_letter as decode_dead_letter
from ._errors import ConsumerError as ConsumerError
from ._payload import PayloadError as PayloadError
from ._producer import add_job as add_job
from ._producer import add_jobs as add_jobs
from ._statistics import ConsumerStatistics as ConsumerStatistics

__all__ = (
    "ConsumerError",
    "ConsumerStatistics",
    "DeadLetter",
    "Delivery",
    "PayloadError",
    "StreamConsumer",
    "add_job",
    "add_jobs",
    "decode_dead_letter",
    "open_stream_consumer",
)


def _fix_module_names() -> None:
    """Make tracebacks and docs say ``trio_pool.redis.X``."""
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("trio_pool.redis."):
            obj.__module__ = __name__


_fix_module_names()
del _fix_module_names, _importlib_util
