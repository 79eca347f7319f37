"""The one exception policy at every block exit: what leaves an ``async with``.

A pool's, a map's, a stream consumer's and a job group's ``async with`` each
run the body beside tasks of their own, and more than one of them may raise.
`exit_error` decides, in one place, what comes out (the table is in the
docs' "Errors at a block's exit" page):

* only the body raised: the body's exception, as itself;
* a `KeyboardInterrupt` or `SystemExit` from anywhere: the first one, as
  itself, with everything else raised at the same time chained as its
  ``__context__`` (a `BaseExceptionGroup`);
* any other combination: a `PoolCrashed` (or the block's subclass of it),
  with a `BaseExceptionGroup` of everything as its ``__cause__``.

`trio.Cancelled` is never news here: the block's own tasks are cancelled when
the block ends early, and a cancellation from outside reaches the caller
again at its next checkpoint. So a `trio.Cancelled` counts only when nothing
else was raised (then it goes on, so that the cancel scope that caused it
catches it).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Final, NoReturn

import trio

from ._errors import PoolCrashed, leaves

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

INTERRUPTS: Final = (KeyboardInterrupt, SystemExit)
"""The exceptions that always come out as themselves."""


def exit_error(
    body: BaseException | None,
    others: Iterable[BaseException],
    *,
    block: str,
    crashed: Callable[[str], PoolCrashed] = PoolCrashed,
) -> BaseException | None:
    """What to raise as a block exits; None: nothing.

    Args:
        body: what the ``async with`` body raised, or None.
        others: what the block's own tasks raised (workers, a feeder, a
            consumer's reader...), groups included; the body's exception may
            be among them (a body that re-raised what a job raised, a nursery
            that collected the body's exception): it counts once.
        block: the block in messages, e.g. ``"pool 'fetch'"``.
        crashed: makes the error of the "any other combination" row from its
            message; `PoolCrashed` or a subclass (the stream consumer's
            `ConsumerError`).

    Returns:
        The exception to raise: ``body`` itself, an interrupt, the crash
        error (its ``__cause__`` set), or a `trio.Cancelled` when nothing but
        cancellation happened; None when nothing was raised.
    """
    found = [
        leaf
        for error in others
        if error is not body
        for leaf in _flat(error)
        if leaf is not body
    ]
    raised = [error for error in found if not isinstance(error, trio.Cancelled)]
    if not raised:
        if body is not None:
            return body
        return found[0] if found else None  # a cancellation from outside
    body_own = _without_cancelled(body)
    everything = raised if body_own is None else [body_own, *raised]
    interrupt = _first_interrupt(everything)
    if interrupt is not None:
        rest = [
            remaining
            for error in everything
            if (remaining := _without(error, interrupt)) is not None
        ]
        if rest:
            context = BaseExceptionGroup(
                f"raised in {block} with {type(interrupt).__name__}", rest
            )
            context.__context__ = interrupt.__context__  # keep its own chain
            interrupt.__context__ = context
        return interrupt
    group = BaseExceptionGroup(f"errors in {block}", everything)
    error = crashed(
        f"{block} crashed: {len(everything)} exceptions were raised at once or "
        "a job raised a BaseException (see __cause__)"
        if len(everything) > 1
        else f"{block} crashed: {type(everything[0]).__name__}: {everything[0]} "
        "(see __cause__)"
    )
    error.__cause__ = group
    return error


async def wait_through_interrupts(
    wait: Callable[[], Awaitable[object]], interrupts: list[BaseException]
) -> None:
    """Await ``wait()`` until it returns, as a Trio nursery waits for its
    children: a `KeyboardInterrupt` (or `SystemExit`) that ends the wait is
    added to ``interrupts`` (to come out once the block is done) and the wait
    goes on. For a block's exit waiting, shielded, for what it owns."""
    while True:
        try:
            await wait()
        except INTERRUPTS as interrupt:  # noqa: PERF203
            interrupts.append(interrupt)
        else:
            return


def reraise(error: BaseException) -> NoReturn:
    """Raise ``error`` (what `exit_error` returned) with the ``__context__``
    it has.

    A ``raise`` while another exception is being handled (the body's, in an
    ``__aexit__``) would replace an interrupt's ``__context__``, the others
    chained there by `exit_error`, with that one.
    """
    context = error.__context__
    try:
        raise error
    finally:
        error.__context__ = context


def _flat(error: BaseException) -> list[BaseException]:
    """``error``'s leaves if it is a group, else ``[error]``."""
    if isinstance(error, BaseExceptionGroup):
        group: BaseExceptionGroup[BaseException] = error  # pyright: ignore[reportUnknownVariableType]
        return leaves(group)
    return [error]


def _first_interrupt(errors: list[BaseException]) -> BaseException | None:
    """The first `KeyboardInterrupt` or `SystemExit` in ``errors`` (groups
    searched too), or None."""
    for error in errors:
        for leaf in _flat(error):
            if isinstance(leaf, INTERRUPTS):
                return leaf
    return None


def _without(error: BaseException, dropped: BaseException) -> BaseException | None:
    """``error`` without ``dropped`` (also inside a group), or None."""
    if error is dropped:
        return None
    if isinstance(error, BaseExceptionGroup):
        group: BaseExceptionGroup[BaseException] = error  # pyright: ignore[reportUnknownVariableType]
        return group.split(lambda leaf: leaf is dropped)[1]
    return error


def _without_cancelled(error: BaseException | None) -> BaseException | None:
    """``error`` without its `trio.Cancelled` (also inside groups), or None."""
    if isinstance(error, BaseExceptionGroup):
        group: BaseExceptionGroup[BaseException] = error  # pyright: ignore[reportUnknownVariableType]
        return group.split(trio.Cancelled)[1]
    if isinstance(error, trio.Cancelled):
        return None
    return error
