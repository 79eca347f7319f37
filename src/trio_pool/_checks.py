"""Argument checks that fail at once, with messages naming the argument and value."""

from __future__ import annotations

import collections.abc
import functools
import inspect
import math
from types import FunctionType
from typing import Any

_CO_COROUTINE = inspect.CO_COROUTINE


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an int (not a bool) of at least ``minimum``.

    Raises:
        TypeError: it is not an int.
        ValueError: it is below ``minimum``.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value!r}")
    return value


def check_seconds(name: str, value: object) -> float | None:
    """Return ``value`` as a float of seconds >= 0, or None (no limit).

    Raises:
        TypeError: it is not a number.
        ValueError: it is negative or NaN.
    """
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds or None, not {value!r}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0, not {value!r}")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool.

    Raises:
        TypeError: it is anything else.
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}")
    return value


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


def _is_async_callable(given: object) -> bool:
    fn: Any = given
    while True:
        if isinstance(fn, functools.partial):
            fn = fn.func  # pyright: ignore[reportUnknownMemberType]
        elif inspect.ismethod(fn):
            fn = fn.__func__
        elif hasattr(fn, "__wrapped__") and not inspect.iscoroutinefunction(fn):
            fn = fn.__wrapped__  # a decorator that kept the async function
        else:
            break
    if inspect.iscoroutinefunction(fn):
        return True
    if inspect.isfunction(fn) or inspect.isbuiltin(fn) or isinstance(fn, type):
        return False
    call: object = getattr(type(fn), "__call__", None)  # noqa: B004  # pyright: ignore[reportUnknownArgumentType]
    return call is not None and inspect.iscoroutinefunction(call)


def check_async_fn(method: str, fn: Any) -> None:
    """Check that ``fn`` is an async function, as `Pool.submit` needs.

    Raises:
        TypeError: ``fn`` is a coroutine object, a sync function, or not callable.
    """
    if type(fn) is FunctionType and fn.__code__.co_flags & _CO_COROUTINE:
        return  # the common case, checked in a few attribute loads
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
    if not _is_async_callable(fn):
        raise TypeError(
            f"{method}() expected an async function, but {fn!r} is not one; "
            "to run a sync function, wrap it: "
            f"pool.{method}(trio.to_thread.run_sync, fn, ...) runs it in a "
            "thread, or define it with 'async def'",
        )
