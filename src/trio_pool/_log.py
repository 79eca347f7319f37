"""The ``trio_pool`` logger, called so that a failing handler never breaks the pool.

The pool logs from inside its transitions, after the books are done. A
handler that raises (the standard handlers catch their own errors, but not
every handler does) must not change an outcome or a count: its error is
printed to stderr once per process, as `logging.Handler.handleError` does,
and otherwise ignored.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Final

logger: Final = logging.getLogger("trio_pool")

DEBUG: Final = logging.DEBUG
INFO: Final = logging.INFO
WARNING: Final = logging.WARNING

_reported = False


def log(
    level: int, msg: str, *args: object, exc_info: BaseException | None = None
) -> None:
    """Log on the ``trio_pool`` logger; never raise (KeyboardInterrupt aside)."""
    if not logger.isEnabledFor(level):
        return
    try:
        logger.log(level, msg, *args, exc_info=exc_info)
    except Exception:
        _report()


def _report() -> None:
    global _reported
    if _reported:
        return
    _reported = True
    try:
        print(
            "trio_pool: a handler of the 'trio_pool' logger raised; the pool goes "
            "on, and later logging errors are not reported:",
            file=sys.stderr,
        )
        traceback.print_exc(file=sys.stderr)
    except Exception:
        pass
