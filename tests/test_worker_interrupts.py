"""A KeyboardInterrupt at every line of the worker loop (issue 17).

The loop that runs the jobs is not KI-protected (the jobs must hear a
Ctrl-C), so a real SIGINT may land at any of its lines. A trace hook raises
one at the n-th time the worker reaches a chosen line (Trio's handler then
raises KeyboardInterrupt there, or hands it to the main task where the frame
is KI-protected). Whichever line and whichever time: the run ends with the
KeyboardInterrupt, every job is resolved and every book closes.
"""

from __future__ import annotations

import contextlib
import inspect
import signal
import sys
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

import trio_pool
from trio_pool import _core, _worker

from .helpers import assert_no_bookkeeping

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

MOST_HITS = 8
"""Each line is interrupted at its first, second, ... up to this many hits."""


def _functions() -> list[Callable[..., Any]]:
    """The worker loop's functions (the loop and the helpers its handlers call)."""
    return [
        obj
        for name, obj in vars(_worker).items()
        if inspect.isfunction(obj)
        and obj.__module__ == _worker.__name__
        and name not in ("_wait_for_job",)  # KI-protected as a whole
    ]


def _lines() -> list[tuple[str, int]]:
    """Every (function, line) of the worker loop that executes."""
    found: list[tuple[str, int]] = []
    for function in _functions():
        code: CodeType = function.__code__
        lines = {line for _, _, line in code.co_lines() if line is not None}
        lines.discard(code.co_firstlineno)  # the def (its decorators)
        found += [(function.__name__, line) for line in sorted(lines)]
    return found


SOURCE = inspect.getsource(_worker).splitlines()
DEFENSIVE = {("_run_jobs", "raise")}
"""Lines no scenario reaches: an Exception that leaves the job's scope while
no job runs (only a bug in the core could raise one)."""
ALL_LINES = _lines()
LINES = [
    (f, line) for f, line in ALL_LINES if (f, SOURCE[line - 1].strip()) not in DEFENSIVE
]


class Interrupter:
    """A trace hook raising SIGINT at the ``hit``-th time a line of ``code``
    runs (tests/test_adversary_batch.py uses it for the map's feeder)."""

    def __init__(self, code: CodeType, line: int, hit: int) -> None:
        self.code = code
        self.line = line
        self.hit = hit
        self.seen = 0
        self.fired = False

    @contextlib.contextmanager
    def armed(self) -> Generator[None, None, None]:
        """Within: the hook traces, and SIGINT raises `KeyboardInterrupt`
        (a process started with SIGINT ignored has no handler for Trio to
        wrap)."""
        previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
        previous_trace = sys.gettrace()
        sys.settrace(self.trace)
        try:
            yield
        finally:
            sys.settrace(previous_trace)
            signal.signal(signal.SIGINT, previous_handler)

    def trace(self, frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code is not self.code or self.fired:
            return None
        return self.local

    def local(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "line" and frame.f_lineno == self.line and not self.fired:
            self.seen += 1
            if self.seen == self.hit:
                self.fired = True
                signal.raise_signal(signal.SIGINT)
        return self.local


def interrupt_each_hit(
    code: CodeType, line: int, most: int, attempt: Callable[[Interrupter], None]
) -> None:
    """Run ``attempt`` (a whole Trio run with its checks) with a Ctrl-C at
    the first, second, ... up to the ``most``-th time ``line`` of ``code``
    runs, until a run in which the line ran fewer times; the line must have
    been reached at least once."""
    for hit in range(1, most + 1):
        interrupter = Interrupter(code, line, hit)
        attempt(interrupter)
        if not interrupter.fired:
            assert hit > 1, "the scenario never ran this line"
            return


class Stop(BaseException):
    """What the last job raises: the scenario's end, out of the pool (as the
    cause of a `trio_pool.PoolCrashed`)."""


async def _scenario(
    pools: list[trio_pool.Pool], jobs: list[trio_pool.Job[Any]]
) -> None:
    """Every path of the worker loop, one after the other; raises `Stop`."""

    async def fail() -> None:
        raise ValueError("job failed")

    async def fail_in_a_group() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail)

    async def fail_when_cancelled() -> None:
        try:
            await trio.sleep_forever()
        finally:
            raise ValueError("cleanup failed")

    async def fail_in_a_group_when_cancelled() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail_when_cancelled)
            await trio.sleep_forever()

    async def two_children() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            await trio.sleep_forever()

    async def stop() -> None:
        raise Stop

    async with trio_pool.open_pool(
        1, max_workers=2, capacity=2, idle_timeout=1
    ) as pool:
        pools.append(pool)
        for fn in (trio.lowlevel.checkpoint, fail, trio.lowlevel.checkpoint):
            jobs.append(await pool.submit(fn))
        jobs += [await pool.submit(trio.sleep, 0) for _ in range(3)]
        await pool.join()
        for fn in (trio.sleep_forever, fail_when_cancelled):
            jobs.append(await pool.submit(fn))
            await trio.testing.wait_all_tasks_blocked()
            jobs[-1].cancel()
        jobs.append(await pool.submit(trio.sleep_forever, timeout=1))
        jobs.append(await pool.submit(fail_in_a_group_when_cancelled, timeout=1))
        jobs.append(await pool.submit(fail_in_a_group))
        await pool.join()
        jobs.append(await pool.submit(trio.sleep, 1))  # handed to the idle worker
        jobs.append(await pool.submit(trio.sleep, 1))  # a second worker starts
        await pool.join()
        await trio.sleep(5)  # the second one retires
    with trio.CancelScope() as outside:
        async with trio_pool.open_pool(4) as pool:  # one stays idle
            pools.append(pool)
            for fn in (
                fail_in_a_group_when_cancelled,
                two_children,
                trio.sleep_forever,
            ):
                jobs.append(await pool.submit(fn))
            await trio.testing.wait_all_tasks_blocked()
            outside.cancel()
    async with trio_pool.open_pool(1) as pool:
        pools.append(pool)
        jobs.append(await pool.submit(stop))


def _run(interrupter: Interrupter) -> tuple[list[trio_pool.Pool], list[Any]]:
    """Run the scenario with the hook; return the pools and jobs it made."""
    pools: list[trio_pool.Pool] = []
    jobs: list[trio_pool.Job[Any]] = []
    clock = trio.testing.MockClock(autojump_threshold=0)
    try:
        with interrupter.armed():
            trio.run(_scenario, pools, jobs, clock=clock)
    except KeyboardInterrupt:
        assert interrupter.fired
    except trio_pool.PoolCrashed as crashed:  # a job's BaseException (the exit policy)
        assert not interrupter.fired, "the KeyboardInterrupt was lost"
        cause = crashed.__cause__
        assert isinstance(cause, BaseExceptionGroup)
        group: BaseExceptionGroup[BaseException] = cause  # pyright: ignore[reportUnknownVariableType]
        assert group.subgroup(Stop) is not None, group
    return pools, jobs


@pytest.mark.parametrize(
    ("function", "line"),
    LINES,
    ids=[f"{f}:{line}:{SOURCE[line - 1].strip()[:40]}" for f, line in LINES],
)
def test_ctrl_c_at_each_line_of_the_worker_loop(
    monkeypatch: pytest.MonkeyPatch, function: str, line: int
) -> None:
    monkeypatch.setattr(_core, "YIELD_EVERY", 2)
    reached = 0
    for hit in range(1, MOST_HITS + 1):
        interrupter = Interrupter(getattr(_worker, function).__code__, line, hit)
        pools, jobs = _run(interrupter)
        if not interrupter.fired:
            break
        reached += 1
        for job in jobs:
            assert job.done, (hit, job)
        for pool in pools:
            assert_no_bookkeeping(pool)
    assert reached, "the scenario never ran this line"


def test_the_scenario_covers_every_path() -> None:
    """Without an interrupt, each kind of ending happens (and only the
    defensive lines are left out of the test above)."""
    assert len(ALL_LINES) - len(LINES) == len(DEFENSIVE)
    pools, jobs = _run(Interrupter(_worker.run_worker.__code__, -1, 1))
    states = {job.state for job in jobs}
    assert states == {
        trio_pool.JobState.SUCCEEDED,
        trio_pool.JobState.FAILED,
        trio_pool.JobState.CANCELLED,
        trio_pool.JobState.TIMED_OUT,
    }, states
    errors = [job._error for job in jobs if job.state is trio_pool.JobState.FAILED]
    assert any(isinstance(e, ExceptionGroup) for e in errors), errors
    assert any(isinstance(e, BaseExceptionGroup) for e in errors), errors
    for pool in pools:
        assert_no_bookkeeping(pool)
