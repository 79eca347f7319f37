"""`AsyncWithOnly`: an async context manager that says how to use it when misused."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, final

from trio.lowlevel import enable_ki_protection

if TYPE_CHECKING:
    from collections.abc import Generator
    from types import TracebackType

T = TypeVar("T")


@final
class AsyncWithOnly(AbstractAsyncContextManager[T]):
    """Wrap an async context manager made by a factory such as `open_pool`.

    Used as intended (``async with``) it is the wrapped manager. Used as the
    thing it yields (``open_pool(4).submit``), awaited, or entered with a
    plain ``with``, it raises an error that shows the right form, as
    `trio.open_nursery` does, instead of Python's ``AttributeError`` about a
    private class.
    """

    __slots__ = ("_call", "_manager", "_target")

    def __init__(
        self, manager: AbstractAsyncContextManager[T], call: str, target: str
    ) -> None:
        self._manager = manager
        self._call = call
        self._target = target

    # KI-protected, as trio's own nursery manager is: a Ctrl-C between the
    # workers' nursery opening and the body starting (or between the body
    # ending and the nursery closing) would leave the nursery open.
    @enable_ki_protection
    async def __aenter__(self) -> T:
        return await self._manager.__aenter__()

    @enable_ki_protection
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        return await self._manager.__aexit__(exc_type, exc, traceback)

    def _right_form(self) -> str:
        return f"async with {self._call} as {self._target}:"

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"{self._call} returns an async context manager, not the "
            f"{self._target} itself: write '{self._right_form()}', then use "
            f"{self._target}.{name} inside the block"
        )

    if not TYPE_CHECKING:  # type checkers reject ``async for`` over it anyway

        def __aiter__(self) -> NoReturn:
            raise TypeError(
                f"{self._call} is not an async iterable: write "
                f"'{self._right_form()}', then 'async for ... in {self._target}'"
            )

    def __await__(self) -> Generator[Any, Any, NoReturn]:
        raise TypeError(f"{self._call} cannot be awaited: write '{self._right_form()}'")

    def __enter__(self) -> NoReturn:
        raise TypeError(f"use '{self._right_form()}', not 'with {self._call}'")

    def __exit__(self, *args: object) -> None:  # pragma: no cover
        raise AssertionError("never entered")
