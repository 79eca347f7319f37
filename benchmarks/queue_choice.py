"""Why the pool keeps its own queue: trio_pool against a memory-channel pool.

The design choice under test: trio_pool queues jobs in its own deque (a job
cancelled there becomes a tombstone that no longer counts against
``capacity``) instead of in a ``trio.open_memory_channel``. The same run
compares, side by side:

* ``trio_pool.open_pool(64)``, the library (defaults, no OpenTelemetry SDK
  configured, so telemetry records nothing);
* `open_channel_pool`, a minimal but correct pool written here: 64 worker
  tasks read job records from ``trio.open_memory_channel(capacity)``; each
  record is the job's handle (``await handle.result()``, ``handle.cancel()``).
  A channel cannot take an item out of its buffer, so cancelling a queued job
  only marks it, and the worker that receives it skips it. It takes schedule
  points as trio_pool does (``submit`` and ``result`` once every 32 calls that
  did not wait, a worker once every 32 jobs), so the queue is what differs;
* the same channel pool with a ``submit`` that takes a schedule point only
  when the channel is full (a channel hands each job sent to a parked worker
  straight to it, so every schedule point the submitter takes lets workers
  park, and costs a task switch per job afterwards: this is the channel pool
  at its fastest).

Measured, each over several rounds (median; the ratios are channel /
trio_pool):

1. throughput: no-op jobs and one-checkpoint jobs, ``await pool.submit(...)``
   from one task, then every result awaited; wall clock from before the pool
   opens to after it has exited, in µs per job;
2. room freed by cancellation: all workers blocked, the queue full, every
   queued job cancelled; how many ``submit_nowait`` calls then succeed
   without waiting (exact: the tasks are settled with
   ``trio.testing.wait_all_tasks_blocked``);
3. cancellation cost: µs per ``cancel()`` of a queued job, over a queue of
   10^4 jobs, cancelled in submission order.

``python benchmarks/queue_choice.py``: 10^5 jobs, 10^4 cancels, 9 rounds
(about 30 s on 2 cores); writes ``benchmarks/results/queue_choice.md``.
``python benchmarks/queue_choice.py --quick``: 2 x 10^4 jobs, 2 x 10^3
cancels, 3 rounds (a few seconds); prints the table and writes nothing
unless ``--output`` is given.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, final

import trio
import trio.testing
from trio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled

import trio_pool

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

WORKERS = 64
CAPACITY = 64
YIELD_EVERY = 32  # as trio_pool's default schedule-point interval
HERE = Path(__file__).parent
RESULTS = HERE / "results" / "queue_choice.md"

# ------------------------------------------------------ the channel-backed pool


class ChannelJobCancelled(Exception):
    """The channel pool's job was cancelled before or while it ran."""


@final
class ChannelJob(Generic[T]):
    """A job record in the channel, and the handle ``submit`` returns."""

    __slots__ = (
        "cancel_requested",
        "done",
        "error",
        "event",
        "fn",
        "pool",
        "scope",
        "value",
    )

    pool: ChannelPool
    fn: Callable[[], Awaitable[T]]
    done: bool
    value: T | None
    error: BaseException | None
    event: trio.Event | None
    scope: trio.CancelScope | None
    cancel_requested: bool

    def __init__(self, pool: ChannelPool, fn: Callable[[], Awaitable[T]]) -> None:
        self.pool = pool
        self.fn = fn
        self.done = False
        self.value = None
        self.error = None
        self.event = None  # made when someone has to wait
        self.scope = None  # the worker's scope while the job runs
        self.cancel_requested = False

    def resolve(self, value: T | None, error: BaseException | None) -> None:
        """Record the outcome and wake the waiters."""
        self.done = True
        self.value = value
        self.error = error
        self.scope = None
        if self.event is not None:
            self.event.set()

    def cancel(self) -> None:
        """Cancel the job: queued, it becomes a tombstone; running, its scope."""
        if self.done:
            return
        if self.scope is None:  # still in the channel: the worker will skip it
            name = getattr(self.fn, "__qualname__", repr(self.fn))
            self.resolve(None, ChannelJobCancelled(f"job {name!r} was cancelled"))
        else:
            self.cancel_requested = True
            self.scope.cancel()

    async def result(self) -> T:
        """Wait until the job is done; return its value or raise its error."""
        await checkpoint_if_cancelled()
        if not self.done:
            if self.event is None:
                self.event = trio.Event()
            await self.event.wait()
        elif self.pool.yield_due():
            await cancel_shielded_checkpoint()
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


@final
class ChannelPool:
    """A worker pool whose queue is a ``trio`` memory channel."""

    def __init__(
        self,
        send: trio.MemorySendChannel[ChannelJob[Any]],
        receive: trio.MemoryReceiveChannel[ChannelJob[Any]],
        *,
        submit_yields: bool = True,
    ) -> None:
        self._send = send
        self._receive = receive
        self._submit_yields = submit_yields
        self._since_yield = 0

    def yield_due(self) -> bool:
        """Count a call that did not wait; True once every ``YIELD_EVERY``."""
        self._since_yield += 1
        if self._since_yield < YIELD_EVERY:
            return False
        self._since_yield = 0
        return True

    async def submit(self, fn: Callable[[], Awaitable[T]]) -> ChannelJob[T]:
        """Queue ``fn()``, waiting while the channel is full.

        Without ``submit_yields``, it takes a schedule point only when the
        channel is full.
        """
        await checkpoint_if_cancelled()
        job = ChannelJob(self, fn)
        try:
            self._send.send_nowait(job)
        except trio.WouldBlock:
            await self._send.send(job)
        else:
            if self._submit_yields and self.yield_due():
                await cancel_shielded_checkpoint()
        return job

    def submit_nowait(self, fn: Callable[[], Awaitable[T]]) -> ChannelJob[T]:
        """Queue ``fn()`` if there is room now.

        Raises:
            trio.WouldBlock: the channel's buffer is full.
        """
        job = ChannelJob(self, fn)
        self._send.send_nowait(job)
        return job

    async def work(self) -> None:
        """A worker: receive jobs and run them until the channel is closed."""
        receive = self._receive
        streak = 0
        while True:
            job: ChannelJob[Any] | None = None
            with trio.CancelScope() as scope:  # replaced only once cancelled
                while True:
                    if streak >= YIELD_EVERY:
                        streak = 0
                        await trio.lowlevel.checkpoint()
                    try:
                        job = receive.receive_nowait()
                    except trio.WouldBlock:
                        try:
                            job = await receive.receive()
                        except trio.EndOfChannel:
                            return
                    except trio.EndOfChannel:
                        return
                    if job.done:  # cancelled in the buffer: a tombstone
                        job = None
                        continue
                    job.scope = scope
                    streak += 1
                    try:
                        value = await job.fn()
                    except Exception as exc:
                        job.resolve(None, exc)
                    else:
                        job.resolve(value, None)
                    spent = job.cancel_requested
                    job = None
                    if spent:  # the scope was cancelled: take a new one
                        break
            if job is not None and not job.done:  # the scope caught its Cancelled
                job.resolve(None, ChannelJobCancelled("job was cancelled"))


@asynccontextmanager
async def open_channel_pool(
    workers: int, capacity: int, *, submit_yields: bool = True
) -> AsyncGenerator[ChannelPool, None]:
    """Open a channel pool; leaving the block closes it and waits for its jobs."""
    send, receive = trio.open_memory_channel[ChannelJob[Any]](capacity)
    pool = ChannelPool(send, receive, submit_yields=submit_yields)
    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(pool.work)
        async with send:
            yield pool


# ----------------------------------------------------------------- the sides


class Handle(Protocol[T_co]):
    """What both pools' job handles offer."""

    def cancel(self) -> None:
        """Cancel the job."""

    async def result(self) -> T_co:
        """Wait for the job and return its value."""
        ...


class AnyPool(Protocol):
    """What both pools offer."""

    async def submit(self, fn: Callable[[], Awaitable[T]]) -> Handle[T]:
        """Queue a job, waiting for room."""
        ...

    def submit_nowait(self, fn: Callable[[], Awaitable[T]]) -> Handle[T]:
        """Queue a job if there is room now."""
        ...


Opener = Callable[[int, int], AbstractAsyncContextManager[AnyPool]]


def open_trio_pool(workers: int, capacity: int) -> AbstractAsyncContextManager[AnyPool]:
    """trio_pool.open_pool with these workers and capacity, defaults otherwise."""
    return trio_pool.open_pool(workers, capacity=capacity)


def open_channel(workers: int, capacity: int) -> AbstractAsyncContextManager[AnyPool]:
    """The channel pool, typed as the common interface."""
    return open_channel_pool(workers, capacity)


def open_channel_fewer_yields(
    workers: int, capacity: int
) -> AbstractAsyncContextManager[AnyPool]:
    """The channel pool whose ``submit`` yields only when the channel is full."""
    return open_channel_pool(workers, capacity, submit_yields=False)


SIDES: dict[str, Opener] = {
    "a: trio_pool (own queue)": open_trio_pool,
    "b: channel pool": open_channel,
    "c: channel pool, submit yields only when full": open_channel_fewer_yields,
}
CANCELLED_ERRORS = (trio_pool.JobCancelled, ChannelJobCancelled)

# ------------------------------------------------------------------- the jobs


async def noop() -> None:
    """A job that does nothing."""


async def checkpoint() -> None:
    """A job that passes one schedule point."""
    await trio.lowlevel.checkpoint()


JOBS: dict[str, Callable[[], Awaitable[None]]] = {
    "noop": noop,
    "checkpoint": checkpoint,
}

# -------------------------------------------------------------- measurements


def time_throughput(opener: Opener, n: int, fn: Callable[[], Awaitable[None]]) -> float:
    """µs per job: submit ``n`` jobs from one task, then await every result."""

    async def main() -> None:
        async with opener(WORKERS, CAPACITY) as pool:
            handles = [await pool.submit(fn) for _ in range(n)]
            for handle in handles:
                await handle.result()

    gc.collect()
    start = time.perf_counter()
    trio.run(main)
    return (time.perf_counter() - start) / n * 1e6


def count_room_freed(opener: Opener) -> int:
    """``submit_nowait`` successes after cancelling a full queue (exact).

    All workers run a job blocked on an event, the queue holds ``CAPACITY``
    more; a further ``submit_nowait`` must fail. Every queued job is then
    cancelled, and ``submit_nowait`` is called until it fails.
    """

    async def main() -> int:
        gate = trio.Event()

        async def blocked() -> None:
            await gate.wait()

        async with opener(WORKERS, CAPACITY) as pool:
            await trio.testing.wait_all_tasks_blocked()
            running = [await pool.submit(blocked) for _ in range(WORKERS)]
            await trio.testing.wait_all_tasks_blocked()  # every worker runs one
            queued = [pool.submit_nowait(blocked) for _ in range(CAPACITY)]
            try:
                pool.submit_nowait(blocked)
            except trio.WouldBlock:
                pass
            else:
                raise AssertionError("the queue should be full")
            for handle in queued:
                handle.cancel()
            freed: list[Handle[None]] = []
            while len(freed) <= CAPACITY:
                try:
                    freed.append(pool.submit_nowait(blocked))
                except trio.WouldBlock:
                    break
            gate.set()
            for handle in running + freed:
                await handle.result()
            for handle in queued:
                try:
                    await handle.result()
                except CANCELLED_ERRORS:
                    pass
                else:
                    raise AssertionError("a cancelled job ran")
        return len(freed)

    return trio.run(main)


def time_cancels(opener: Opener, n: int) -> float:
    """µs per ``cancel()`` of a queued job, over ``n`` queued jobs."""
    elapsed = 0.0

    async def main() -> None:
        nonlocal elapsed
        gate = trio.Event()

        async def blocked() -> None:
            await gate.wait()

        async with opener(WORKERS, n) as pool:
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(WORKERS):
                await pool.submit(blocked)
            await trio.testing.wait_all_tasks_blocked()
            queued = [pool.submit_nowait(blocked) for _ in range(n)]
            gc.collect()
            start = time.perf_counter()
            for handle in queued:
                handle.cancel()
            elapsed = time.perf_counter() - start
            gate.set()

    trio.run(main)
    return elapsed / n * 1e6


def self_check() -> None:
    """Check that the channel pool is correct where the benchmark relies on it.

    Raises:
        AssertionError: a value, error or cancellation went wrong.
    """

    async def main() -> None:
        async def value() -> int:
            await trio.lowlevel.checkpoint()
            return 42

        async def fail() -> None:
            raise ValueError("boom")

        async with open_channel_pool(2, 2) as pool:
            assert await (await pool.submit(value)).result() == 42
            failing = await pool.submit(fail)
            try:
                await failing.result()
            except ValueError:
                pass
            else:
                raise AssertionError("the job's error was lost")
            running = pool.submit_nowait(trio.sleep_forever)
            await trio.testing.wait_all_tasks_blocked()
            running.cancel()  # cancels it while it runs
            try:
                await running.result()
            except ChannelJobCancelled:
                pass
            else:
                raise AssertionError("the running job was not cancelled")
            assert await (await pool.submit(value)).result() == 42  # new scope

    trio.run(main)


# ------------------------------------------------------------------- running


def spread(samples: list[float], digits: int) -> str:
    """``median (min-max)`` of the samples."""
    med = statistics.median(samples)
    return f"{med:.{digits}f} ({min(samples):.{digits}f}-{max(samples):.{digits}f})"


def ratio(over: float, under: float) -> str:
    """``over / under`` with two decimals, or a dash for a zero ``under``."""
    return f"{over / under:.2f}" if under else "-"


def row(label: str, samples: dict[str, list[float]], digits: int) -> list[str]:
    """One table row: each side's figures, and each channel pool's ratio to a."""
    first, *others = SIDES
    base = statistics.median(samples[first])
    cells = [label, spread(samples[first], digits)]
    for name in others:
        cells += [
            spread(samples[name], digits),
            ratio(statistics.median(samples[name]), base),
        ]
    return cells


def run(jobs: int, cancels: int, rounds: int) -> list[list[str]]:
    """Measure every side, interleaved; return the table's rows."""
    names = list(SIDES)
    for opener in SIDES.values():  # warm up: imports, caches, first-run costs
        for fn in JOBS.values():
            time_throughput(opener, 2_000, fn)
        time_cancels(opener, 1_000)
    per_job: dict[str, dict[str, list[float]]] = {
        kind: {name: [] for name in names} for kind in JOBS
    }
    freed: dict[str, list[float]] = {name: [] for name in names}
    cancel_us: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        order = names[shift:] + names[:shift]
        for kind, fn in JOBS.items():
            for name in order:
                per_job[kind][name].append(time_throughput(SIDES[name], jobs, fn))
        for name in order:
            freed[name].append(count_room_freed(SIDES[name]))
            cancel_us[name].append(time_cancels(SIDES[name], cancels))
        print(f"  round {round_index + 1}/{rounds} done", file=sys.stderr, flush=True)

    rows = [
        row(f"throughput, {jobs:,} `{kind}` jobs (µs/job)", per_job[kind], 2)
        for kind in JOBS
    ]
    same = all(len(set(freed[name])) == 1 for name in names)
    room = row(
        f"room freed by cancelling {CAPACITY} queued jobs: `submit_nowait`"
        f" successes, of {CAPACITY}{' (every round)' if same else ''}",
        freed,
        0,
    )
    if same:  # exact, so no spread
        for index, name in zip((1, *range(2, len(room), 2)), names, strict=True):
            room[index] = f"{freed[name][0]:g}"
    rows.append(room)
    rows.append(row(f"cancel {cancels:,} queued jobs (µs/cancel)", cancel_us, 3))
    return rows


def machine() -> str:
    """The CPU model and count, the OS, Python, trio and trio_pool versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()};"
        f" Python {platform.python_version()} ({platform.python_implementation()});"
        f" trio {trio.__version__}; trio_pool {version('trio-pool')}"
    )


def report(rows: list[list[str]], jobs: int, cancels: int, rounds: int) -> str:
    """The Markdown report: setup, table, how to read it."""
    command = shlex.join([sys.executable, *sys.argv])
    first, *others = SIDES
    header = ["measurement", first]
    for name in others:
        header += [name, f"{name[0]}/a"]
    lines = [
        "# trio_pool's own queue against a memory-channel pool",
        "",
        f"- Machine: {machine()}",
        f"- Command (from the repository root): `{command}`",
        f"- Rounds: {rounds}, in one process, the pools interleaved (order"
        " rotating); figures are medians, (min-max) over the rounds; the"
        " ratios are of the medians.",
        f"- Pools: {WORKERS} workers, capacity {CAPACITY} (for the cancellation"
        f" cost: capacity {cancels:,}); trio_pool with its defaults, no"
        " OpenTelemetry SDK.",
        "",
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * (len(header) - 1),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    lines += [
        "",
        f"- Throughput: wall clock from before the pool opens to after it exits;"
        f" {jobs:,} jobs submitted with `await pool.submit(fn)` from one task,"
        " then every `await handle.result()`.",
        "- Room freed: every worker runs a job blocked on an event and"
        f" {CAPACITY} jobs wait in the queue (one more `submit_nowait` fails);"
        " all of them are cancelled, then `submit_nowait` is called until it"
        " fails. trio_pool's queue counts only live jobs, so the room is free"
        " at once; a channel keeps the cancelled records in its buffer until"
        " workers receive and skip them, so a cancelled job holds its slot"
        " until a worker is free. Exact: the tasks are settled with"
        " `trio.testing.wait_all_tasks_blocked`.",
        f"- Cancellation cost: {cancels:,} queued jobs cancelled in submission"
        " order, timed around the `cancel()` loop only. A channel pool's"
        " cancelled record is paid for again later, when a worker receives and"
        " skips it; that is not in this figure.",
        "- The channel pools are in `benchmarks/queue_choice.py`: 64 workers"
        " reading job records from `trio.open_memory_channel(capacity)`, the"
        " record being the handle. b takes schedule points as trio_pool does"
        f" (`submit` and `result` once every {YIELD_EVERY} calls that did not"
        f" wait, each worker once every {YIELD_EVERY} jobs); c differs from b"
        " only in `submit`, which takes a schedule point only when the channel"
        " is full. Both create a job's `trio.Event` only when someone has to"
        " wait.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Parse the arguments, measure, print the table and write it."""
    parser = argparse.ArgumentParser(
        description="trio_pool's own queue against a memory-channel pool."
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds and jobs; writes nothing"
    )
    parser.add_argument("--rounds", type=int, help="rounds (default 9, quick 3)")
    parser.add_argument(
        "--output",
        type=Path,
        help=f"where to write the report (default {RESULTS}, none with --quick)",
    )
    args = parser.parse_args()
    if args.quick:
        jobs, cancels, rounds, output = 20_000, 2_000, 3, args.output
    else:
        jobs, cancels, rounds, output = 100_000, 10_000, 9, args.output or RESULTS
    if args.rounds is not None:
        rounds = args.rounds
    self_check()
    started = time.perf_counter()
    rows = run(jobs, cancels, rounds)
    text = report(rows, jobs, cancels, rounds)
    print(text)
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
