"""Run every Python example in README.md and docs/ as a test (Sybil).

Examples call ``trio.run(main)`` like real programs. While they run,
``trio.run`` gets a `trio.testing.MockClock` that jumps ahead whenever every
task is blocked, so an example that sleeps for an hour takes milliseconds.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import trio
import trio.testing
from sybil import Sybil
from sybil.parsers import markdown, rest

_real_run = trio.run


def _run_with_mock_clock(*args: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("clock", trio.testing.MockClock(autojump_threshold=0))
    return _real_run(*args, **kwargs)


def _setup(namespace: dict[str, Any]) -> None:
    namespace["_monkeypatch"] = monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(trio, "run", functools.wraps(_real_run)(_run_with_mock_clock))


def _teardown(namespace: dict[str, Any]) -> None:
    namespace["_monkeypatch"].undo()


pytest_collect_file = (
    Sybil(
        parsers=[markdown.PythonCodeBlockParser(), markdown.SkipParser()],
        patterns=["README.md"],
        setup=_setup,
        teardown=_teardown,
    )
    + Sybil(
        parsers=[rest.PythonCodeBlockParser(), rest.SkipParser()],
        patterns=["*.rst"],
        path="docs",
        setup=_setup,
        teardown=_teardown,
    )
).pytest()
