"""Argument checks that fail at once, with messages naming the argument and value."""

from __future__ import annotations

import collections.abc
import enum
import functools
import inspect
import math
import sys
from types import FunctionType
from typing import TYPE_CHECKING, Any, Final, final

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

_CO_COROUTINE = inspect.CO_COROUTINE

MAX_WORKERS: Final = 1_000_000
"""The most workers a pool may have (``workers`` and ``max_workers``)."""

MAX_CAPACITY: Final = sys.maxsize
"""The largest queue ``capacity`` a pool accepts."""

MAX_BURST: Final = 1_000_000
"""The largest ``burst`` of a rate limit."""

MIN_RATE: Final = 1e-9
"""The smallest ``rate`` (one start in about 32 years): below it the bucket's
interval times ``burst`` would overflow a float and lift the limit."""


def _show(value: object) -> str:
    """``repr(value)``, shortened for ints too long to read."""
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"an int of {len(str(abs(value)))} digits"
    return repr(value)


def check_int(name: str, value: object, minimum: int, maximum: int) -> int:
    """Return ``value`` if it is an int (not a bool) in ``[minimum, maximum]``.

    Raises:
        TypeError: it is not an int.
        ValueError: it is out of range.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {_show(value)}")
    if value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, not {_show(value)}")
    return value


def check_seconds(name: str, value: object) -> float | None:
    """Return ``value`` as a float of seconds >= 0, or None (no limit).

    Raises:
        TypeError: it is not a number.
        ValueError: it is negative, NaN, or too large for a float.
    """
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds or None, not {value!r}")
    try:
        seconds = float(value)
    except OverflowError:
        raise ValueError(
            f"{name} must fit in a float (math.inf or None for no limit), "
            f"not {_show(value)}"
        ) from None
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"{name} must be >= 0, not {_show(value)}")
    return seconds


def check_rate(name: str, value: object) -> float | None:
    """Return ``value`` as a float > 0 per second (finite), or None (no limit).

    Raises:
        TypeError: it is not a number.
        ValueError: it is not > 0, not finite, or below `MIN_RATE`.
    """
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number per second or None, not {value!r}")
    try:
        per_second = float(value)
    except OverflowError:
        per_second = math.inf
    if not (0 < per_second < math.inf):
        raise ValueError(
            f"{name} must be > 0 and finite (None for no limit), not {_show(value)}"
        )
    if per_second < MIN_RATE:
        raise ValueError(
            f"{name} must be >= {MIN_RATE} per second (one start in about 32 "
            f"years), not {_show(value)}"
        )
    return per_second


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool.

    Raises:
        TypeError: it is anything else.
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}")
    return value


def check_provider(name: str, value: object, method: str) -> None:
    """Check that ``value`` is None or has ``method`` (an OpenTelemetry
    provider's ``get_tracer`` or ``get_meter``): a wrong object is a bad
    argument, not a provider that raises (which the pool only logs).

    Raises:
        TypeError: naming the argument and the value.
    """
    if value is not None and not callable(getattr(value, method, None)):
        raise TypeError(
            f"{name} must be an OpenTelemetry provider (with {method}()) or None, "
            f"not {value!r}"
        )


def check_iterable(name: str, value: object) -> None:
    """Check that ``value`` is a sync or an async iterable.

    Raises:
        TypeError: it is neither.
    """
    if not isinstance(value, (collections.abc.Iterable, collections.abc.AsyncIterable)):
        raise TypeError(
            f"{name} must be an iterable or an async iterable, not {value!r}"
        )


def check_name(name: str, value: object) -> str | None:
    """Return ``value`` if it is a str or None.

    Raises:
        TypeError: it is anything else.
    """
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, not {value!r}")
    return value


def _unwrap(given: object) -> Any:
    """The function under partials, bound methods and keeping decorators."""
    fn: Any = given
    while True:
        if isinstance(fn, functools.partial):
            fn = fn.func  # pyright: ignore[reportUnknownMemberType]
        elif inspect.ismethod(fn):
            fn = fn.__func__
        elif hasattr(fn, "__wrapped__") and not inspect.iscoroutinefunction(fn):
            fn = fn.__wrapped__  # a decorator that kept the async function
        else:
            return fn


def _is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` surely returns a coroutine (``fn`` unwrapped)."""
    if inspect.iscoroutinefunction(fn):
        return True
    if inspect.isfunction(fn) or inspect.isbuiltin(fn) or isinstance(fn, type):
        return False
    call: object = getattr(type(fn), "__call__", None)  # noqa: B004  # pyright: ignore[reportUnknownArgumentType]
    return call is not None and inspect.iscoroutinefunction(call)


def _sync_hint(method: str) -> str:
    """How to run a sync function through ``method``, in a form that works."""
    if method == "map":
        return (
            "to run a sync function in a thread, wrap it: "
            "pool.map(functools.partial(trio.to_thread.run_sync, fn), items)"
        )
    return (
        "to run a sync function in a thread, wrap it: "
        f"pool.{method}(trio.to_thread.run_sync, fn, ...)"
    )


def _async_gen_hint(method: str, fn: object) -> str:
    """Why an async generator function cannot be a job, and what to write."""
    return (
        f"{method}() expected an async function, but {fn!r} is an async "
        "generator function: a job runs to one result. Collect its items in "
        "an async function (async def job(): return [x async for x in gen()]), "
        "or give the generator to pool.map as its items"
    )


@final
class CoroutineChecked:
    """A callable that is not surely async, checked when the job calls it.

    As `trio.Nursery.start_soon` does, a lambda or a `functools.partial` that
    returns a coroutine is accepted; whatever else the call returns fails the
    job with a `TypeError` that says what it got and what to write instead.
    """

    __slots__ = ("func", "method")

    def __init__(self, method: str, func: Callable[..., Any]) -> None:
        self.method = method
        self.func = func  # the name `describe` looks under, as in a partial

    def __call__(self, *args: Any) -> Coroutine[Any, Any, Any]:
        result = self.func(*args)
        if isinstance(result, collections.abc.Coroutine):
            return result  # pyright: ignore[reportUnknownVariableType]
        method, fn = self.method, self.func
        if inspect.isasyncgen(result):
            loop = result.aclose()  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            loop.close()  # pyright: ignore[reportUnknownMemberType]
            raise TypeError(_async_gen_hint(method, fn))
        raise TypeError(
            f"{method}() expected an async function, but {fn!r} is a sync "
            f"function: it returned {result!r}, not a coroutine; "
            f"{_sync_hint(method)}, or define it with 'async def'"
        )

    def __repr__(self) -> str:
        return repr(self.func)


def check_async_fn(method: str, fn: Any) -> Callable[..., Awaitable[Any]]:
    """Check ``fn`` as `Pool.submit` needs it; return the callable to run.

    An async function (also under partials, bound methods and decorators
    that keep ``__wrapped__``) is returned as it is: the common case costs a
    few attribute loads. Another callable that may return a coroutine (a
    lambda, a partial of one) is returned wrapped in `CoroutineChecked`.

    Raises:
        TypeError: ``fn`` is a coroutine object, an async generator function,
            a builtin or a class (surely sync), or not callable.
    """
    if type(fn) is FunctionType and fn.__code__.co_flags & _CO_COROUTINE:
        return fn
    if inspect.iscoroutine(fn):
        fn.close()  # no "coroutine was never awaited" warning on top of the error
        fn_name = getattr(fn, "__name__", "fn")
        raise TypeError(
            f"{method}() expected an async function, but instead it got a "
            f"coroutine object {fn!r}\n\n"
            "Probably you did something like:\n\n"
            f"  pool.{method}({fn_name}(...))  # incorrect!\n\n"
            "Instead, you want (notice the parentheses!):\n\n"
            f"  pool.{method}({fn_name}, ...)  # correct!",
        )
    if not callable(fn):
        raise TypeError(f"{method}() expected an async function, not {fn!r}")
    inner = _unwrap(fn)
    if _is_async_callable(inner):
        return fn  # type: ignore[no-any-return]
    if inspect.isasyncgenfunction(inner):
        raise TypeError(_async_gen_hint(method, fn))
    if inspect.isbuiltin(inner) or isinstance(inner, type):
        what = "a class" if isinstance(inner, type) else "a sync builtin"
        raise TypeError(
            f"{method}() expected an async function, but {fn!r} is {what}; "
            f"{_sync_hint(method)}"
        )
    return CoroutineChecked(method, fn)


DEFAULT_IDLE_TIMEOUT: Final = 30.0
"""Seconds a worker above the minimum may idle before it retires."""


def check_max_workers(workers: int, max_workers: object) -> int:
    """Return the checked ``max_workers`` (``workers`` when None)."""
    if max_workers is None:
        return workers
    checked = check_int("max_workers", max_workers, 1, MAX_WORKERS)
    if checked < workers:
        raise ValueError(f"max_workers must be >= workers ({workers}), not {checked!r}")
    return checked


def default_capacity(max_workers: int) -> int:
    """The queue capacity used when ``open_pool`` is given none."""
    return max(max_workers, 64)


class UsePoolDefault(enum.Enum):
    """The type of `USE_POOL_DEFAULT`: one value, so that type checkers
    narrow ``timeout is USE_POOL_DEFAULT``."""

    USE_POOL_DEFAULT = "the pool's job_timeout"

    def __repr__(self) -> str:
        return "trio_pool.USE_POOL_DEFAULT"


USE_POOL_DEFAULT: Final = UsePoolDefault.USE_POOL_DEFAULT
"""The default of every ``timeout=`` argument: the pool's ``job_timeout``
applies. A wrapper passes it on to mean "not given" (``None`` means no
limit)."""

USE_DEFAULT: Final = USE_POOL_DEFAULT
"""The modules' short name of `USE_POOL_DEFAULT`."""
