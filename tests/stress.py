"""Soak test: a million jobs of every kind through one pool, with the real clock.

Not a unit test (pytest does not collect it). Run it with::

    python tests/stress.py                       # 10**6 jobs, seeds 1, 2 and 3
    python tests/stress.py --jobs 20000 --seeds 1  # a smoke run of a few seconds
    nox -s stress -- --jobs 200000

Each seed is its own ``trio.run``: a pool that scales (``max_workers >
workers``) with a modest capacity, fed by several submitter tasks that mix
``await pool.submit`` and ``pool.submit_nowait``, and a seeded random mix of
jobs that succeed at once or after a few checkpoints, fail, time out, are
cancelled while queued or while running, or submit a child job to their own
pool. The pool is resized now and then. At most ``--window`` handles are
outstanding at any time (the submitters wait for the oldest beyond that), so
memory stays bounded by design, and RSS is sampled to show that it does.

Every handle is checked once it is done: its state is the one its job was
meant to reach, ``await job.wait()`` agrees with the state, and its terminal
state is counted exactly once (and checked again later, to catch a state that
changes after the fact). At the end of a seed the pool must have exited,
every handle must be done, and ``pool.statistics()`` before and after the
pool closes must match those counts exactly. The last seed also runs with the
OpenTelemetry SDK, whose span and metric counts must match too.

A hang is a failure, not a freeze: a seed with no progress for
``--stall-timeout`` seconds, or not done within ``--seed-timeout`` seconds
(a ``trio.fail_after``), is cancelled and reported with a snapshot of where
it stood; if even cancelling does not unwind it, ``faulthandler`` dumps every
thread's stack and ends the process with status 1 a minute later.

Exit status 0 when every seed passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import enum
import faulthandler
import logging
import os
import random
import sys
import time
import traceback
from typing import TYPE_CHECKING, Final

import outcome
import trio
import trio.lowlevel
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Histogram, InMemoryMetricReader, Sum
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

import trio_pool

if TYPE_CHECKING:
    from collections.abc import Sequence

QUEUED: Final = trio_pool.JobState.QUEUED
RUNNING: Final = trio_pool.JobState.RUNNING
SUCCEEDED: Final = trio_pool.JobState.SUCCEEDED
FAILED: Final = trio_pool.JobState.FAILED
TIMED_OUT: Final = trio_pool.JobState.TIMED_OUT
CANCELLED: Final = trio_pool.JobState.CANCELLED
TERMINAL: Final = (SUCCEEDED, FAILED, TIMED_OUT, CANCELLED)

TIME_LIMIT: Final = 0.0005
"""The ``timeout=`` of the jobs meant to time out."""
TIMED_JOB_SLEEP: Final = 1.0
"""How long those jobs sleep: far past their limit."""
GENEROUS_LIMIT: Final = 30.0
"""A ``timeout=`` given to some ordinary jobs, never reached."""
CHECK_EVERY: Final = 10_000
"""Top-level jobs between two invariant and statistics checks."""
RECHECK_DEPTH: Final = 4096
"""Settled handles kept to check, later, that their state did not change."""
MAX_DEPTH: Final = 2
"""How deep self-submission may nest (a child may submit a grandchild)."""
EXAMPLES: Final = 3
"""Failure messages kept per kind of failure (all are counted)."""
MIB: Final = 1 << 20
PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")

JOB_OUTCOME: Final = "trio_pool.job.outcome"
DURATION_METRIC: Final = "trio_pool.job.duration"
WAIT_METRIC: Final = "trio_pool.job.wait.duration"
SUBMITTED_METRIC: Final = "trio_pool.submitted_jobs"
REJECTED_METRIC: Final = "trio_pool.rejected_jobs"


class Kind(enum.Enum):
    """What a job does, and so how it must end."""

    OK_NOW = "ok-now"
    """Returns at once."""
    OK_CHECKPOINTS = "ok-checkpoints"
    """Returns after one to three ``await trio.lowlevel.checkpoint()``."""
    FAIL = "fail"
    """Raises ValueError, at once or after a checkpoint."""
    TIMEOUT = "timeout"
    """Sleeps far past its ``timeout=``."""
    CANCEL_QUEUED = "cancel-queued"
    """Cancelled right after submit, or after one checkpoint."""
    CANCEL_RUNNING = "cancel-running"
    """Waits forever; the driver cancels it once it is RUNNING."""
    SPAWN = "spawn"
    """Submits a child job to its own pool (``PoolOverloaded`` tolerated)."""


TOP_LEVEL_MIX: Final = (
    (Kind.OK_NOW, 0.38),
    (Kind.OK_CHECKPOINTS, 0.20),
    (Kind.FAIL, 0.10),
    (Kind.TIMEOUT, 0.01),
    (Kind.CANCEL_QUEUED, 0.17),
    (Kind.CANCEL_RUNNING, 0.02),
    (Kind.SPAWN, 0.12),
)
CHILD_MIX: Final = (
    (Kind.OK_NOW, 0.4),
    (Kind.OK_CHECKPOINTS, 0.3),
    (Kind.FAIL, 0.2),
    (Kind.SPAWN, 0.1),
)


class Mix:
    """Draws kinds with the given weights (one random() and a bisect each)."""

    def __init__(self, weights: Sequence[tuple[Kind, float]]) -> None:
        self.kinds = [kind for kind, _ in weights]
        total = 0.0
        self.bounds: list[float] = []
        for _, weight in weights:
            total += weight
            self.bounds.append(total)
        self.total = total

    def draw(self, rng: random.Random) -> Kind:
        index = bisect.bisect_right(self.bounds, rng.random() * self.total)
        return self.kinds[min(index, len(self.kinds) - 1)]


TOP_LEVEL: Final = Mix(TOP_LEVEL_MIX)
CHILDREN: Final = Mix(CHILD_MIX)


class Entry:
    """One job as the driver sees it: what it does, its handle, what it expects."""

    __slots__ = (
        "checkpoints",
        "child",
        "child_await",
        "expect",
        "job",
        "kind",
        "name",
        "ran",
        "settled",
        "soak",
        "started",
        "timed",
        "timeout",
        "token",
    )

    def __init__(self, kind: Kind, token: int) -> None:
        self.kind = kind
        self.token = token  # the value it returns, and its id in messages
        self.checkpoints = 0
        self.timed = False  # whether timeout= is passed at all
        self.timeout: float | None = None
        self.name: str | None = None
        self.started: trio.Event | None = None  # CANCEL_RUNNING only
        self.soak: Soak | None = None  # SPAWN only
        self.child: Entry | None = None  # SPAWN only
        self.child_await = False  # SPAWN: await pool.submit (else submit_nowait)
        self.job: trio_pool.Job[int] | None = None
        self.expect: trio_pool.JobState | None = None
        self.ran = False  # cancelled by the driver while RUNNING
        self.settled: trio_pool.JobState | None = None

    def describe(self) -> str:
        state = "no handle" if self.job is None else self.job.state.value
        expect = "?" if self.expect is None else self.expect.value
        return f"{self.kind.value} job #{self.token} (state {state}, expected {expect})"


async def run_job(entry: Entry) -> int:
    """The one job function; what it does depends on the entry's kind."""
    kind = entry.kind
    if kind is Kind.OK_NOW:
        return entry.token
    if kind is Kind.FAIL:
        if entry.checkpoints:
            await trio.lowlevel.checkpoint()
        raise ValueError(f"job #{entry.token} fails on purpose")
    if kind is Kind.TIMEOUT:
        await trio.sleep(TIMED_JOB_SLEEP)
        return entry.token
    if kind is Kind.CANCEL_RUNNING:
        assert entry.started is not None
        entry.started.set()
        await trio.sleep_forever()
    if kind is Kind.SPAWN:
        await spawn_child(entry)
        return entry.token
    for _ in range(entry.checkpoints):  # OK_CHECKPOINTS and CANCEL_QUEUED
        await trio.lowlevel.checkpoint()
    return entry.token


async def spawn_child(entry: Entry) -> None:
    """Submit the entry's child to the pool this job runs in."""
    soak, child = entry.soak, entry.child
    assert soak is not None
    assert child is not None
    assert soak.pool is not None
    entry.child = None
    try:
        if entry.child_await:
            job = await submit(soak.pool, child)
        else:
            job = submit_nowait(soak.pool, child)
    except trio_pool.PoolOverloaded:
        if entry.child_await:
            soak.rejected_in_jobs_await += 1
        else:
            soak.rejected_in_jobs_nowait += 1
        return
    child.job = job
    soak.children += 1
    soak.track(child)


def submit_nowait(pool: trio_pool.Pool, entry: Entry) -> trio_pool.Job[int]:
    if entry.timed:
        return pool.submit_nowait(
            run_job, entry, name=entry.name, timeout=entry.timeout
        )
    return pool.submit_nowait(run_job, entry, name=entry.name)


async def submit(pool: trio_pool.Pool, entry: Entry) -> trio_pool.Job[int]:
    if entry.timed:
        return await pool.submit(run_job, entry, name=entry.name, timeout=entry.timeout)
    return await pool.submit(run_job, entry, name=entry.name)


def rss() -> int:
    """Resident set size of this process, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


class SpanCounter(SpanProcessor):
    """Counts the spans that end, by outcome, and drops them."""

    def __init__(self) -> None:
        self.ended = 0
        self.by_outcome: collections.Counter[str] = collections.Counter()

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1
        attributes = span.attributes or {}
        self.by_outcome[str(attributes.get(JOB_OUTCOME))] += 1


class Telemetry:
    """The OpenTelemetry SDK: spans counted and dropped, metrics kept in memory."""

    def __init__(self) -> None:
        self.spans = SpanCounter()
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(self.spans)
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(
            metric_readers=[self.reader], shutdown_on_exit=False
        )

    def collect(self) -> dict[str, int]:
        """Histogram counts and counter sums, by metric (and by job outcome)."""
        found: collections.Counter[str] = collections.Counter()
        data = self.reader.get_metrics_data()
        if data is None:
            return dict(found)
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points = metric.data
                    if isinstance(points, Histogram):
                        for point in points.data_points:
                            found[metric.name] += point.count
                            if metric.name == DURATION_METRIC:
                                key = (point.attributes or {}).get(JOB_OUTCOME)
                                found[f"{metric.name}[{key}]"] += point.count
                    elif isinstance(points, Sum):
                        for number in points.data_points:
                            found[metric.name] += int(number.value)
        return dict(found)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


class LogCounter(logging.Handler):
    """Counts the records of the ``trio_pool`` logger by level, and drops them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] += 1


class Config:
    """The command line."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.jobs: int = args.jobs
        self.seeds: list[int] = args.seed_list
        self.submitters: int = args.submitters
        self.window: int = args.window
        self.rss_every: int = args.rss_every
        self.rss_limit: float = args.rss_limit_mib
        self.stall_timeout: float = args.stall_timeout
        self.seed_timeout: float = (
            args.seed_timeout
            if args.seed_timeout is not None
            else 120 + self.jobs * 300e-6
        )
        self.resize_every = max(500, self.jobs // 50)


class Soak:
    """One seed: the pool, the driver's own books, and the checks."""

    def __init__(
        self, config: Config, seed: int, telemetry: Telemetry | None, logs: LogCounter
    ) -> None:
        self.config = config
        self.seed = seed
        self.telemetry = telemetry
        self.logs = logs
        self.rng = random.Random(seed)
        rng = self.rng
        self.workers = rng.randint(2, 8)
        self.max_workers = self.workers + rng.randint(4, 24)
        self.capacity = rng.choice([8, 16, 32, 64])
        self.idle_timeout = rng.choice([0.005, 0.05, 1.0])

        self.pool: trio_pool.Pool | None = None
        self.helpers: trio.Nursery | None = None
        self.window: collections.deque[Entry] = collections.deque()
        self.recheck: collections.deque[Entry] = collections.deque()
        self.settling: set[Entry] = set()  # handles being awaited now
        self.awaiting_start: set[Entry] = set()  # CANCEL_RUNNING not cancelled yet
        self.phase = "opening the pool"
        self.progress = 0
        self.next_token = 0

        # The driver's own books.
        self.top_level = 0
        self.children = 0
        self.accepted = 0
        self.settled = 0
        self.tally: dict[trio_pool.JobState, int] = dict.fromkeys(trio_pool.JobState, 0)
        self.cancelled_after_start = 0  # handles CANCELLED after they had started
        self.rejected_nowait = 0  # submitter's submit_nowait, then await submit
        self.rejected_in_jobs_nowait = 0
        self.rejected_in_jobs_await = 0
        self.cancelled_queued = 0
        self.cancelled_queued_after_checkpoint = 0
        self.cancel_found_running = 0  # meant for a queued job: it had started
        self.cancel_found_done = 0  # meant for a queued job: it was done already
        self.cancelled_running = 0
        self.resizes = 0
        self.invariant_checks = 0
        self.max_queued = 0

        self.rss_samples: list[tuple[int, int]] = []
        self.failures: dict[str, list[str]] = {}  # the first few, by kind
        self.failure_counts: collections.Counter[str] = collections.Counter()
        self.hang: str | None = None
        self.near_deadline: str | None = None
        self.before: trio_pool.PoolStatistics | None = None
        self.after: trio_pool.PoolStatistics | None = None
        self.metrics: dict[str, int] = {}
        self.metrics_live: dict[str, int] = {}  # collected just before closing
        self.wall = 0.0
        self.exited = False

    # ------------------------------------------------------------- the books

    @property
    def rejected(self) -> int:
        return (
            self.rejected_nowait
            + self.rejected_in_jobs_nowait
            + self.rejected_in_jobs_await
        )

    @property
    def started(self) -> int:
        """Jobs that ran (a span and a duration each): all but queued cancels."""
        return (
            self.tally[SUCCEEDED]
            + self.tally[FAILED]
            + self.tally[TIMED_OUT]
            + self.cancelled_after_start
        )

    def fail(self, what: str, detail: str) -> None:
        """Record a failure: ``what`` names its kind, ``detail`` this instance."""
        self.failure_counts[what] += 1
        examples = self.failures.setdefault(what, [])
        if len(examples) < EXAMPLES:
            examples.append(detail)

    def track(self, entry: Entry) -> None:
        """Count an accepted handle and put it in the window."""
        self.accepted += 1
        self.window.append(entry)

    def token(self) -> int:
        self.next_token += 1
        return self.next_token

    # -------------------------------------------------------------- planning

    def plan(self, rng: random.Random, kind: Kind, depth: int) -> Entry:
        entry = Entry(kind, self.token())
        if kind is Kind.OK_NOW or kind is Kind.OK_CHECKPOINTS or kind is Kind.FAIL:
            if kind is Kind.OK_CHECKPOINTS:
                entry.checkpoints = rng.randint(1, 3)
            elif kind is Kind.FAIL:
                entry.checkpoints = rng.randint(0, 1)
            dice = rng.random()
            if dice < 0.1:
                entry.timed, entry.timeout = True, GENEROUS_LIMIT
            elif dice < 0.15:
                entry.timed, entry.timeout = True, None
            entry.expect = FAILED if kind is Kind.FAIL else SUCCEEDED
        elif kind is Kind.TIMEOUT:
            entry.timed, entry.timeout = True, TIME_LIMIT
            entry.expect = TIMED_OUT
        elif kind is Kind.CANCEL_QUEUED:
            entry.checkpoints = rng.randint(1, 2)
            # expect is decided when the driver cancels it
        elif kind is Kind.CANCEL_RUNNING:
            entry.started = trio.Event()
            entry.expect = CANCELLED
        else:
            entry.soak = self
            entry.child_await = rng.random() < 0.5
            child_kind = CHILDREN.draw(rng)
            if child_kind is Kind.SPAWN and depth + 1 >= MAX_DEPTH:
                child_kind = Kind.OK_NOW
            entry.child = self.plan(rng, child_kind, depth + 1)
            entry.expect = SUCCEEDED
        if rng.random() < 0.125:
            entry.name = f"stress {kind.value}"
        return entry

    # ------------------------------------------------------------- the soak

    async def run(self) -> None:
        config = self.config
        start = time.perf_counter()
        telemetry = self.telemetry
        try:
            async with trio_pool.open_pool(
                self.workers,
                max_workers=self.max_workers,
                capacity=self.capacity,
                idle_timeout=self.idle_timeout,
                name=f"stress-{self.seed}",
                tracer_provider=None
                if telemetry is None
                else telemetry.tracer_provider,
                meter_provider=None if telemetry is None else telemetry.meter_provider,
            ) as pool:
                self.pool = pool
                self.phase = "submitting"
                self.progress += 1
                share, extra = divmod(config.jobs, config.submitters)
                async with trio.open_nursery() as helpers:
                    self.helpers = helpers
                    for index in range(config.submitters):
                        rng = random.Random(self.rng.getrandbits(64))
                        count = share + (index < extra)
                        helpers.start_soon(self.submitter, rng, count)
                self.phase = "waiting for the last handles"
                self.progress += 1
                while self.window:
                    await self.settle(self.window.popleft())
                self.check_now("before the pool closes")
                self.before = pool.statistics()
                if telemetry is not None:  # counters may be fed by the live pool
                    self.metrics_live = telemetry.collect()
                self.phase = "leaving the pool's async with"
                self.progress += 1
            self.exited = True
            self.phase = "after the pool exited"
            self.progress += 1
            self.after = pool.statistics()
            self.check_now("after the pool exited")
        finally:
            self.wall = time.perf_counter() - start

    async def submitter(self, rng: random.Random, count: int) -> None:
        pool, helpers = self.pool, self.helpers
        assert pool is not None
        assert helpers is not None
        config = self.config
        window = self.window
        for _ in range(count):
            entry = self.plan(rng, TOP_LEVEL.draw(rng), 0)
            if rng.random() < 0.5:
                try:
                    job = submit_nowait(pool, entry)
                except trio_pool.PoolOverloaded:
                    self.rejected_nowait += 1
                    job = await submit(pool, entry)
            else:
                job = await submit(pool, entry)
            entry.job = job
            if entry.kind is Kind.CANCEL_QUEUED:
                after_checkpoint = rng.random() < 0.5
                if after_checkpoint:
                    await trio.lowlevel.checkpoint()
                self.cancel_queued(entry, after_checkpoint)
            elif entry.kind is Kind.CANCEL_RUNNING:
                self.awaiting_start.add(entry)
                helpers.start_soon(self.cancel_when_running, entry)
            self.track(entry)
            self.top_level += 1
            self.progress += 1
            done = self.top_level
            if done % CHECK_EVERY == 0:
                self.check_now(f"after {done:,} jobs")
            if done % config.rss_every == 0:
                self.rss_samples.append((done, rss()))
            if done % config.resize_every == 0:
                self.resize(pool, rng)
            while len(window) > config.window:
                await self.settle(window.popleft())

    def cancel_queued(self, entry: Entry, after_checkpoint: bool) -> None:
        job = entry.job
        assert job is not None
        state = job.state
        if state is QUEUED:
            job.cancel()
            if job.state is not CANCELLED or not job.done:
                self.fail(
                    "a queued job not CANCELLED at once by cancel()",
                    f"{entry.describe()}: {job.state.value} after cancel()",
                )
            entry.expect = CANCELLED
            self.cancelled_queued += 1
            self.cancelled_queued_after_checkpoint += after_checkpoint
        elif state is RUNNING:  # suspended at one of its checkpoints
            job.cancel()
            entry.expect = CANCELLED
            entry.ran = True
            self.cancel_found_running += 1
        else:
            job.cancel()  # does nothing to a job that is done
            if job.state is not state:
                self.fail(
                    "cancel() changed a done job",
                    f"{entry.describe()}: was {state.value}",
                )
            entry.expect = SUCCEEDED
            self.cancel_found_done += 1

    async def cancel_when_running(self, entry: Entry) -> None:
        job, started = entry.job, entry.started
        assert job is not None
        assert started is not None
        await started.wait()
        self.awaiting_start.discard(entry)
        if job.state is not RUNNING:
            self.fail("a job that set its event is not RUNNING", entry.describe())
        job.cancel()
        entry.ran = True
        self.cancelled_running += 1
        self.progress += 1

    def resize(self, pool: trio_pool.Pool, rng: random.Random) -> None:
        workers = rng.randint(1, 10)
        max_workers = rng.choice([None, workers, workers + rng.randint(1, 30)])
        try:
            pool.resize(workers, max_workers=max_workers)
        except Exception as exc:
            self.fail("resize() raised", f"({workers}, {max_workers}): {exc!r}")
        self.resizes += 1

    async def settle(self, entry: Entry) -> None:
        """Wait for one handle and check it (once per handle)."""
        job = entry.job
        assert job is not None
        self.settling.add(entry)
        try:
            result = await job.wait()
        finally:
            self.settling.discard(entry)
        self.progress += 1
        state = job.state
        if entry.settled is not None:
            self.fail("a handle settled twice (driver bug)", entry.describe())
            return
        entry.settled = state
        self.settled += 1
        self.tally[state] += 1
        if state is CANCELLED and entry.ran:
            self.cancelled_after_start += 1
        if state not in TERMINAL or not job.done:
            self.fail(
                "wait() returned before the job was done",
                f"{entry.describe()}: done={job.done}, wait() gave {result!r}",
            )
        elif entry.expect is not None and state is not entry.expect:
            self.fail(
                f"{entry.kind.value} job ended {state.value}",
                f"{entry.describe()}, wait() gave {result!r}",
            )
        elif not self.consistent(state, result, entry.token):
            self.fail(
                f"wait() disagrees with state {state.value}",
                f"{entry.describe()}: wait() gave {result!r}",
            )
        elif entry.token % 61 == 0:  # all is well: now and then, try result() too
            try:
                value = await job.result()
            except Exception as exc:
                again: outcome.Outcome[int] = outcome.Error(exc)
            else:
                again = outcome.Value(value)
            if not self.consistent(state, again, entry.token):
                self.fail(
                    "result() disagrees with the state",
                    f"{entry.describe()}: result() gave {again!r}",
                )
        recheck = self.recheck
        if len(recheck) >= RECHECK_DEPTH:
            self.check_unchanged(recheck.popleft())
        recheck.append(entry)

    @staticmethod
    def consistent(
        state: trio_pool.JobState, result: outcome.Outcome[int], token: int
    ) -> bool:
        if isinstance(result, outcome.Value):
            return state is SUCCEEDED and result.value == token
        assert isinstance(result, outcome.Error)
        error = result.error
        if state is FAILED:
            return isinstance(error, ValueError) and f"#{token} " in str(error)
        if state is TIMED_OUT:
            return isinstance(error, trio_pool.JobTimeout)
        if state is CANCELLED:
            return isinstance(error, trio_pool.JobCancelled)
        return False

    def check_unchanged(self, entry: Entry) -> None:
        job = entry.job
        assert job is not None
        if job.state is not entry.settled:
            settled = "?" if entry.settled is None else entry.settled.value
            self.fail(
                "a job's state changed after it was done",
                f"{entry.describe()}: was {settled} when settled",
            )

    def check_now(self, where: str) -> None:
        """The core's own invariant check, if any, and the statistics' balance."""
        pool = self.pool
        assert pool is not None
        core = getattr(pool, "_core", None)
        check_invariants = getattr(core, "check_invariants", None)
        if callable(check_invariants):
            self.invariant_checks += 1
            try:
                check_invariants()
            except Exception as exc:
                self.fail("_core.check_invariants() raised", f"{where}: {exc!r}")
        s = pool.statistics()
        self.max_queued = max(self.max_queued, s.queued)
        finished = s.succeeded + s.failed + s.timed_out + s.cancelled
        problems: list[str] = []
        if s.submitted != s.queued + s.running + finished:
            problems.append("submitted != queued + running + finished")
        if s.queued < 0 or s.running < 0 or s.running > s.workers:
            problems.append("queued/running out of range")
        if s.submitted < self.accepted:
            problems.append(f"submitted < {self.accepted:,} handles accepted")
        if s.rejected != self.rejected:
            problems.append(f"rejected != {self.rejected:,} PoolOverloaded caught")
        for state in TERMINAL:
            if getattr(s, state.value) < self.tally[state]:
                problems.append(f"{state.value} < {self.tally[state]:,} handles seen")
        if problems:
            self.fail(
                "statistics inconsistent while running", f"{where}: {problems}: {s}"
            )

    # --------------------------------------------------------- hang detection

    async def watchdog(self, deadline: float, cancel_scope: trio.CancelScope) -> None:
        """Cancel the seed when it makes no progress for --stall-timeout seconds.

        Also take a snapshot just before the seed's deadline, so that a
        ``trio.fail_after`` timeout is reported with the state it stood in.
        """
        stall_timeout = self.config.stall_timeout
        seen = (self.progress, self.phase)
        quiet_since = trio.current_time()
        while True:
            await trio.sleep(min(0.5, stall_timeout / 4))
            now = trio.current_time()
            if now >= deadline - 1.0 and self.near_deadline is None:
                self.near_deadline = self.snapshot("1 s before --seed-timeout")
            if (self.progress, self.phase) != seen:
                seen = (self.progress, self.phase)
                quiet_since = now
            elif now - quiet_since >= stall_timeout:
                self.hang = self.snapshot(
                    f"HANG: no progress for {now - quiet_since:.1f} s"
                )
                cancel_scope.cancel()
                return

    def snapshot(self, headline: str) -> str:
        lines = [f"{headline}, while {self.phase}"]
        if self.pool is not None:
            lines.append(f"  statistics: {self.pool.statistics()}")
            check_invariants = getattr(
                getattr(self.pool, "_core", None), "check_invariants", None
            )
            if callable(check_invariants):
                try:
                    check_invariants()
                except Exception as exc:
                    lines.append(f"  _core.check_invariants() raised {exc!r}")
                else:
                    lines.append("  _core.check_invariants() passed")
        states = collections.Counter(
            "no handle" if e.job is None else e.job.state.value for e in self.window
        )
        lines.append(
            f"  {len(self.window):,} handles in the window, by state: {counts(states)}"
        )
        lines.extend(
            f"  being awaited: {entry.describe()}" for entry in list(self.settling)[:8]
        )
        lines.extend(
            f"  not RUNNING yet, to cancel when it is: {entry.describe()}"
            for entry in list(self.awaiting_start)[:8]
        )
        lines.append(
            f"  books: {self.top_level:,} top-level jobs submitted, "
            f"{self.accepted:,} handles, {self.settled:,} settled"
        )
        return "\n".join(lines)

    # ----------------------------------------------------------- final checks

    def final_checks(self) -> None:
        """The end of the seed: every handle done, the statistics exact."""
        if self.before is not None:  # every handle was settled before closing
            self.check_books("before the pool closed", self.before)
        if not self.exited:
            return  # failed already: hung, or an exception; nothing more to say
        if self.window or self.settled != self.accepted:
            self.fail(
                "handles not done at the end",
                f"{self.accepted:,} accepted, {self.settled:,} settled",
            )
        if self.top_level != self.config.jobs:
            self.fail(
                "top-level jobs missing (driver bug)",
                f"{self.top_level:,}, not {self.config.jobs:,}",
            )
        while self.recheck:
            self.check_unchanged(self.recheck.popleft())
        if self.after is None:
            self.fail("no statistics after the pool exited", "")
        else:
            self.check_books("after the pool exited", self.after)
        self.check_rss()
        if self.telemetry is not None:
            self.check_telemetry(self.telemetry)

    def check_books(self, when: str, s: trio_pool.PoolStatistics) -> None:
        """``pool.statistics()`` against the driver's own counts, exactly."""
        expected: dict[str, object] = {
            "submitted": self.accepted,
            "queued": 0,
            "running": 0,
            "succeeded": self.tally[SUCCEEDED],
            "failed": self.tally[FAILED],
            "timed_out": self.tally[TIMED_OUT],
            "cancelled": self.tally[CANCELLED],
            "rejected": self.rejected,
            "waiting_submitters": 0,
        }
        if when.startswith("after"):
            expected.update(workers=0, idle_workers=0, closed=True)
        wrong = [
            f"{field}={getattr(s, field)!r} (the handles say {value!r})"
            for field, value in expected.items()
            if getattr(s, field) != value
        ]
        finished = s.succeeded + s.failed + s.timed_out + s.cancelled
        if s.submitted != s.queued + s.running + finished:
            wrong.append("submitted != queued + running + finished")
        if wrong:
            self.fail(f"statistics {when} do not match", ", ".join(wrong))

    def rss_figures(self) -> tuple[int, int, int, int] | None:
        """(jobs at the first sample, first, max, last) after warm-up."""
        warm = [(n, b) for n, b in self.rss_samples if n >= 2 * self.config.rss_every]
        if not warm:
            return None
        return warm[0][0], warm[0][1], max(b for _, b in warm), warm[-1][1]

    def check_rss(self) -> None:
        figures = self.rss_figures()
        if figures is None:
            return
        _, first, _, last = figures
        if last - first > self.config.rss_limit * MIB:
            self.fail(
                "RSS grew after warm-up",
                f"by {(last - first) / MIB:.1f} MiB (limit {self.config.rss_limit})",
            )

    def check_telemetry(self, telemetry: Telemetry) -> None:
        """Spans and metrics from the SDK against the driver's counts."""
        self.metrics = metrics = telemetry.collect()
        live = self.metrics_live
        durations = metrics.get(DURATION_METRIC, 0)
        checks = [
            ("job.duration count", durations, self.started),
            ("job.wait.duration count", metrics.get(WAIT_METRIC, 0), self.started),
            ("spans", telemetry.spans.ended, durations),
            ("submitted_jobs", live.get(SUBMITTED_METRIC, 0), self.accepted),
            ("rejected_jobs", live.get(REJECTED_METRIC, 0), self.rejected),
        ]
        by_outcome = telemetry.spans.by_outcome
        for state in TERMINAL:
            ran = self.tally[state]
            if state is CANCELLED:  # only those cancelled while running
                ran = self.cancelled_after_start
            checks.append((f"{state.value} spans", by_outcome[state.value], ran))
            key = f"{DURATION_METRIC}[{state.value}]"
            checks.append((f"{state.value} durations", metrics.get(key, 0), ran))
        for what, got, want in checks:
            if got != want:
                self.fail("telemetry does not match", f"{what} {got:,}, not {want:,}")
        if not 0 < durations <= self.settled:
            self.fail(
                "telemetry does not match",
                f"{durations:,} durations for {self.settled:,} jobs",
            )

    # ---------------------------------------------------------------- report

    def report(self) -> str:
        config = self.config
        t = self.tally
        telemetry = (
            "SDK (spans counted, metrics in memory)" if self.telemetry else "off"
        )
        per_job = self.wall / self.accepted * 1e6 if self.accepted else 0.0
        lines = [
            f"seed {self.seed}: pool opened with workers={self.workers} "
            f"max_workers={self.max_workers} capacity={self.capacity} "
            f"idle_timeout={self.idle_timeout}; {config.submitters} submitters, "
            f"window {config.window:,}; telemetry {telemetry}",
            f"  jobs        {self.top_level:,} top-level + {self.children:,} "
            f"self-submitted = {self.accepted:,} handles, {self.settled:,} checked",
            f"  wall time   {self.wall:.2f} s, {per_job:.1f} µs per handle",
            f"  states      succeeded {t[SUCCEEDED]:,}, failed {t[FAILED]:,}, "
            f"timed_out {t[TIMED_OUT]:,}, cancelled {t[CANCELLED]:,}",
            f"  cancels     {self.cancelled_queued:,} while queued "
            f"({self.cancelled_queued_after_checkpoint:,} after a checkpoint), "
            f"{self.cancelled_running:,} while running; meant for a queued job "
            f"but it had started: {self.cancel_found_running:,}, was done: "
            f"{self.cancel_found_done:,}",
            f"  rejections  {self.rejected:,} PoolOverloaded: "
            f"{self.rejected_nowait:,} submit_nowait in submitters (then submit), "
            f"in jobs {self.rejected_in_jobs_nowait:,} submit_nowait + "
            f"{self.rejected_in_jobs_await:,} submit",
            f"  pool        {self.resizes} resizes, {self.invariant_checks} "
            f"check_invariants() calls, max queued seen {self.max_queued}; "
            f"trio_pool log records: {counts(self.logs.counts)}",
        ]
        figures = self.rss_figures()
        if figures is None:
            lines.append(
                f"  RSS         n/a: fewer than {2 * config.rss_every:,} jobs "
                f"(samples every {config.rss_every:,}: {len(self.rss_samples)})"
            )
        else:
            at, first, peak, last = figures
            lines.append(
                f"  RSS         first {first / MIB:.1f} MiB (at {at:,} jobs), "
                f"max {peak / MIB:.1f}, last {last / MIB:.1f} "
                f"({(last - first) / MIB:+.1f} MiB; limit +{config.rss_limit:g})"
            )
        if self.before is not None:
            lines.append(f"  before exit {self.before}")
        if self.after is not None:
            lines.append(f"  after exit  {self.after}")
        if self.telemetry is not None and self.metrics:
            lines.append(
                f"  telemetry   {self.telemetry.spans.ended:,} spans, "
                f"{self.metrics.get(DURATION_METRIC, 0):,} job.duration, "
                f"{self.started:,} jobs started by the books; spans by outcome "
                f"{counts(self.telemetry.spans.by_outcome)}; submitted_jobs "
                f"{self.metrics_live.get(SUBMITTED_METRIC, 0):,}, rejected_jobs "
                f"{self.metrics_live.get(REJECTED_METRIC, 0):,}"
            )
        if self.hang is not None:
            lines.append(self.hang)
        if self.near_deadline is not None:
            lines.append(self.near_deadline)
        for what, examples in self.failures.items():
            lines.append(f"  FAIL: {what} (x{self.failure_counts[what]:,}), e.g.")
            lines.extend(f"          {example}" for example in examples)
        lines.append(f"  {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)

    @property
    def passed(self) -> bool:
        return not self.failure_counts and self.hang is None


async def run_seed(soak: Soak) -> None:
    """One seed, with a time limit and a stall watchdog around it."""
    config = soak.config
    try:
        with trio.fail_after(config.seed_timeout):
            deadline = trio.current_time() + config.seed_timeout
            async with trio.open_nursery() as nursery:
                nursery.start_soon(soak.watchdog, deadline, nursery.cancel_scope)
                await soak.run()
                nursery.cancel_scope.cancel()
    except trio.TooSlowError:
        soak.fail(
            "HANG: not done within --seed-timeout",
            f"{config.seed_timeout:g} s, while {soak.phase}",
        )
    except Exception as exc:
        soak.fail(
            "unexpected exception",
            f"while {soak.phase}:\n" + "".join(traceback.format_exception(exc)),
        )
    if soak.hang is not None:
        soak.hang += "\n  (cancelled by the watchdog; the pool then unwound)"
    soak.final_checks()


def counts(counter: collections.Counter[str]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counter.items())) or "none"


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="per seed")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated")
    parser.add_argument("--submitters", type=int, default=4)
    parser.add_argument(
        "--window", type=int, default=10_000, help="most handles outstanding"
    )
    parser.add_argument("--rss-every", type=int, default=100_000, metavar="JOBS")
    parser.add_argument("--rss-limit-mib", type=float, default=20.0)
    parser.add_argument("--stall-timeout", type=float, default=30.0, metavar="S")
    parser.add_argument(
        "--seed-timeout",
        type=float,
        default=None,
        metavar="S",
        help="default: 120 s + 300 µs per job",
    )
    args = parser.parse_args(argv)
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds must be integers separated by commas: {args.seeds!r}")
    sizes = (args.jobs, args.submitters, args.window, args.rss_every)
    if not args.seed_list or min(sizes) < 1 or args.stall_timeout <= 0:
        parser.error(
            "--seeds, --jobs, --submitters, --window, --rss-every and "
            "--stall-timeout must be positive"
        )
    return Config(args)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    seeds = config.seeds
    logs = LogCounter()
    trio_logger = logging.getLogger("trio_pool")
    trio_logger.addHandler(logs)
    trio_logger.setLevel(logging.WARNING)
    trio_logger.propagate = False  # every failed job may log: count, not print
    print(
        f"trio_pool {trio_pool.__version__} stress: {config.jobs:,} jobs per seed, "
        f"seeds {', '.join(map(str, seeds))}, Python {sys.version.split()[0]}, "
        f"trio {trio.__version__}",
        flush=True,
    )
    results: list[tuple[int, bool]] = []
    for index, seed in enumerate(seeds):
        telemetry = Telemetry() if index == len(seeds) - 1 else None
        logs.counts.clear()
        soak = Soak(config, seed, telemetry, logs)
        # The last resort, should cancelling a hung seed not unwind it.
        faulthandler.dump_traceback_later(config.seed_timeout + 60, exit=True)
        try:
            trio.run(run_seed, soak)
        finally:
            faulthandler.cancel_dump_traceback_later()
            if telemetry is not None:
                telemetry.shutdown()
        print(soak.report(), flush=True)
        results.append((seed, soak.passed))
    failed = [seed for seed, passed in results if not passed]
    verdict = f"FAIL (seeds {', '.join(map(str, failed))})" if failed else "PASS"
    print(f"stress: {len(results)} seeds, {verdict}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
