"""trio_pool: a bounded worker pool for Trio."""

from __future__ import annotations

from ._checks import USE_POOL_DEFAULT as USE_POOL_DEFAULT
from ._checks import UsePoolDefault as UsePoolDefault
from ._completed import AsCompleted as AsCompleted
from ._completed import as_completed as as_completed
from ._errors import JobCancelled as JobCancelled
from ._errors import JobTimeout as JobTimeout
from ._errors import PoolClosed as PoolClosed
from ._errors import PoolCrashed as PoolCrashed
from ._errors import PoolError as PoolError
from ._errors import PoolOverloaded as PoolOverloaded
from ._errors import SubmitTimeout as SubmitTimeout
from ._group import JobGroup as JobGroup
from ._job import Job as Job
from ._job import JobState as JobState
from ._map import MapResults as MapResults
from ._pool import Pool as Pool
from ._pool import open_pool as open_pool
from ._statistics import PoolStatistics as PoolStatistics
from ._version import __version__ as __version__

__all__ = (
    "USE_POOL_DEFAULT",
    "AsCompleted",
    "Job",
    "JobCancelled",
    "JobGroup",
    "JobState",
    "JobTimeout",
    "MapResults",
    "Pool",
    "PoolClosed",
    "PoolCrashed",
    "PoolError",
    "PoolOverloaded",
    "PoolStatistics",
    "SubmitTimeout",
    "UsePoolDefault",
    "as_completed",
    "open_pool",
)


def _fix_module_names() -> None:
    """Make tracebacks and docs say ``trio_pool.X``, not ``trio_pool._module.X``."""
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("trio_pool."):
            obj.__module__ = __name__


_fix_module_names()
del _fix_module_names
