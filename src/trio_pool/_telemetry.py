"""OpenTelemetry spans and metrics for a pool (API only; the SDK is the user's).

Costs are kept off the hot path: instruments are created once per meter
provider, the gauges are asynchronous (one callback per provider, over the
live pools), attribute dicts are built once per pool, and a provider that is
the API's no-op default when the pool opens is skipped entirely.

Telemetry can never break the pool: the core calls it after its books are
done, and every method here catches what a provider raises, logs the first
such error of the pool at WARNING (with its traceback) and otherwise ignores
it.
"""

# Telemetry keeps its note (the span's context) on the job record and reads its times.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import threading
import weakref
from collections import Counter
from typing import TYPE_CHECKING, Any, Final, Generic, TypeAlias, TypeVar, final

from opentelemetry import metrics, trace
from opentelemetry.context import attach, detach, get_current
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from ._job import CANCELLED, FAILED, SUCCEEDED, TIMED_OUT, JobState
from ._log import WARNING, log
from ._version import __version__

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, TracerProvider

    from ._job import FeaturedJob, Job
    from ._statistics import Counts, PoolStatistics


SCOPE_NAME: Final = "trio_pool"
SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.26.0"
DURATION_BUCKETS: Final = (
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip

POOL_NAME: Final = "trio_pool.name"
JOB_NAME: Final = "trio_pool.job.name"
JOB_OUTCOME: Final = "trio_pool.job.outcome"
JOB_WAIT: Final = "trio_pool.job.wait.duration"
GROUP_NAME: Final = "trio_pool.group.name"
GROUP_FAILED: Final = "trio_pool.group.failed_jobs"
REJECTION_REASON: Final = "trio_pool.rejection.reason"
WORKER_STATE: Final = "trio_pool.worker.state"
REJECTION_REASONS: Final = ("overloaded", "closed", "deadline")
ERROR_TYPE: Final = "error.type"

GAUGES: Final = (
    ("trio_pool.queue.length", "queued", "{job}", "Jobs waiting now."),
    ("trio_pool.queue.limit", "capacity", "{job}", "The queue's capacity."),
    (
        "trio_pool.worker.limit",
        "max_workers",
        "{worker}",
        "The most workers the pool may run.",
    ),
    (
        "trio_pool.rate.tokens",
        "rate_tokens",
        "{token}",
        "Job starts the rate limit allows at once now (pools with a rate).",
    ),
    (
        "trio_pool.key.waiting_jobs",
        "waiting_for_key",
        "{job}",
        "Jobs set aside until a job of their key ends (pools with per_key_limit).",
    ),
    (
        "trio_pool.key.active",
        "active_keys",
        "{key}",
        "Keys with jobs queued or running (pools with per_key_limit).",
    ),
)
"""The asynchronous gauges that report one `PoolStatistics` field each."""


T = TypeVar("T")


def get_meter(provider: MeterProvider) -> metrics.Meter:
    """trio_pool's meter from ``provider`` (pools and stream consumers share it)."""
    return provider.get_meter(SCOPE_NAME, __version__, schema_url=SCHEMA_URL)


@final
class PerProvider(Generic[T]):
    """One ``T`` per meter provider, made on first use, dropped with it.

    Instruments are created once per provider and shared by every pool (or
    stream consumer) that reports to it; readers may collect from another
    thread, hence the lock.
    """

    def __init__(self, make: Callable[[MeterProvider], T]) -> None:
        self._make = make
        self._made: weakref.WeakKeyDictionary[object, T] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, provider: MeterProvider) -> T:
        """The ``T`` of ``provider``, made now if it is the first call."""
        with self._lock:
            made = self._made.get(provider)
            if made is None:
                made = self._made[provider] = self._make(provider)
            return made


def is_api_default(provider: object) -> bool:
    """Whether ``provider`` is the API's own no-op or not-yet-set proxy."""
    return (
        isinstance(
            provider,
            (
                trace.NoOpTracerProvider,
                trace.ProxyTracerProvider,
                metrics.NoOpMeterProvider,
            ),
        )
        or type(provider).__name__ == "_ProxyMeterProvider"
    )


@final
class _Instruments:
    """The instruments of one meter provider, shared by every pool using it."""

    def __init__(self, provider: MeterProvider) -> None:
        meter = get_meter(provider)
        self.pools: dict[int, PoolTelemetry] = {}
        self.lock = threading.Lock()  # readers may collect from another thread
        # The counts of the pools that closed, by pool name: a counter's
        # series goes on after its pool, as a synchronous counter's would.
        self.retired: dict[str, Counter[str]] = {}
        meter.create_observable_counter(
            "trio_pool.submitted_jobs",
            [self._submitted],
            unit="{job}",
            description="Jobs accepted.",
        )
        meter.create_observable_counter(
            "trio_pool.rejected_jobs",
            [self._rejected],
            unit="{job}",
            description="Submissions refused.",
        )
        self.duration = meter.create_histogram(
            "trio_pool.job.duration",
            unit="s",
            description="Running time of each finished job.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.wait = meter.create_histogram(
            "trio_pool.job.wait.duration",
            unit="s",
            description="Time from submit to start.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        for name, field, unit, description in GAUGES:
            meter.create_observable_up_down_counter(
                name, [self._observer(field)], unit=unit, description=description
            )
        meter.create_observable_up_down_counter(
            "trio_pool.workers",
            [self._workers],
            unit="{worker}",
            description="Live workers, busy or idle.",
        )

    def _live(self) -> list[PoolTelemetry]:
        with self.lock:
            return list(self.pools.values())

    def _totals(self) -> dict[str, Counter[str]]:
        """The counts of every pool name, live pools and retired ones."""
        with self.lock:
            totals = {name: Counter(counts) for name, counts in self.retired.items()}
            live = list(self.pools.values())
        for pool in live:
            totals.setdefault(pool.name, Counter()).update(pool.tally())
        return totals

    def retire(self, pool: PoolTelemetry) -> None:
        """Stop observing ``pool``; keep its counts under its name."""
        tally = pool.tally()
        with self.lock:
            self.pools.pop(id(pool), None)
            self.retired.setdefault(pool.name, Counter()).update(tally)

    def count_retired(self, name: str, reason: str, count: int) -> None:
        """Add ``count`` refusals for ``reason`` to the counts of a pool
        named ``name`` that has closed (a submit after it exited)."""
        with self.lock:
            self.retired.setdefault(name, Counter())[reason] += count

    def _submitted(self, _: CallbackOptions) -> Iterable[Observation]:
        return [
            metrics.Observation(counts["submitted"], {POOL_NAME: name})
            for name, counts in self._totals().items()
        ]

    def _rejected(self, _: CallbackOptions) -> Iterable[Observation]:
        observations: list[Observation] = []
        for name, counts in self._totals().items():
            for reason in REJECTION_REASONS:
                count = counts[reason]
                if count:
                    attributes = {POOL_NAME: name, REJECTION_REASON: reason}
                    observations.append(metrics.Observation(count, attributes))
        return observations

    def _observer(
        self, field: str
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        """A gauge callback reporting one statistics field of every live pool."""

        def observe(_: CallbackOptions) -> Iterable[Observation]:
            observations: list[Observation] = []
            for pool in self._live():
                value = getattr(pool.statistics(), field)
                if value is not None:  # None: the pool has no such limit
                    observations.append(
                        metrics.Observation(value, {POOL_NAME: pool.name})
                    )
            return observations

        return observe

    def _workers(self, _: CallbackOptions) -> Iterable[Observation]:
        observations: list[Observation] = []
        for pool in self._live():
            stats = pool.statistics()
            busy = stats.workers - stats.idle_workers
            for state, count in (("busy", busy), ("idle", stats.idle_workers)):
                attributes = {POOL_NAME: pool.name, WORKER_STATE: state}
                observations.append(metrics.Observation(count, attributes))
        return observations


_instruments_per_provider = PerProvider(_Instruments)


def _error_type(state: JobState, error: BaseException) -> str:
    """The ``error.type`` of a job that ended with ``error``."""
    if state is TIMED_OUT:
        return "timeout"
    if state is CANCELLED:
        return "cancelled"
    return type(error).__qualname__


JobSpan: TypeAlias = "tuple[Span, Token[Context], Context]"
"""What a worker keeps while a traced job runs: its span, the token of the
context that made it current, and that context (the duration is recorded
in it: no look-up of the current one)."""


@final
class PoolTelemetry:
    """The spans and metrics of one pool. No method ever raises."""

    name: str
    statistics: Callable[[], PoolStatistics]
    tracing: bool
    metering: bool
    retired: bool

    def __init__(
        self,
        name: str,
        statistics: Callable[[], PoolStatistics],
        counts: Callable[[], Counts],
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        *,
        record_waits: bool = False,
    ) -> None:
        self.name = name
        self.statistics = statistics
        self._counts = counts
        self._failed = False
        self.retired = False  # its counts went to its name's (`closed`)
        tracer_provider = tracer_provider or trace.get_tracer_provider()
        meter_provider = meter_provider or metrics.get_meter_provider()
        self.tracing = not is_api_default(tracer_provider)
        self.metering = not is_api_default(meter_provider)
        self._tracer: trace.Tracer | None = None
        self._instruments: _Instruments | None = None
        try:
            if self.tracing:
                self._tracer = tracer_provider.get_tracer(
                    SCOPE_NAME, __version__, schema_url=SCHEMA_URL
                )
            if self.metering:
                self._instruments = _instruments_per_provider.get(meter_provider)
        except Exception as exc:
            self._provider_failed(exc)
            self.tracing = self._tracer is not None
            self.metering = False
        self._attributes: dict[str, Any] = {POOL_NAME: name}
        # The last job's function (or given name), its name and its span's.
        self._names_of: object = None
        self._names = ("", "")
        self._outcome_attributes = {
            state: {POOL_NAME: name, JOB_OUTCOME: state.value}
            for state in (SUCCEEDED, FAILED, TIMED_OUT, CANCELLED)
        }
        self._succeeded = self._outcome_attributes[SUCCEEDED]
        # The histograms each job records into (None: not recorded).
        instruments = self._instruments
        self._durations = None if instruments is None else instruments.duration
        self._waits = (
            instruments.wait if instruments is not None and record_waits else None
        )

    @property
    def active(self) -> bool:
        """Whether anything is recorded at all."""
        return self.tracing or self.metering

    def _provider_failed(self, exc: Exception) -> None:
        """Log the first error a provider raised in this pool; ignore the rest."""
        if self._failed:
            return
        self._failed = True
        log(
            WARNING,
            "pool %r: an OpenTelemetry provider raised; the pool goes on, and "
            "further telemetry errors of this pool are not logged",
            self.name,
            exc_info=exc,
        )

    def opened(self) -> None:
        """Start reporting this pool's gauges."""
        instruments = self._instruments
        if instruments is not None:
            with instruments.lock:
                instruments.pools[id(self)] = self

    def closed(self) -> None:
        """Stop reporting this pool's gauges; its counts stay, by its name."""
        self.retired = True
        instruments = self._instruments
        if instruments is not None:
            try:
                instruments.retire(self)
            except Exception as exc:
                self._provider_failed(exc)

    def refused_after_exit(self, reason: str, count: int) -> None:
        """Count refusals of a pool that has exited (`closed` retired its
        counts): they go to its name's retired counts, as the pool's own
        counts go on too; the instruments keep nothing of the pool."""
        instruments = self._instruments
        if instruments is not None:
            try:
                instruments.count_retired(self.name, reason, count)
            except Exception as exc:
                self._provider_failed(exc)

    def tally(self) -> Counter[str]:
        """The pool's accepted and refused submissions, from its own counts."""
        counts = self._counts()
        tally = Counter(counts.rejected_by_reason())
        tally["submitted"] = counts.submitted
        return tally

    def created(self, job: FeaturedJob[Any]) -> None:
        """Called in the submitter's task: remember its context."""
        if self.tracing:
            try:
                job._span_context = get_current()
            except Exception as exc:
                self._provider_failed(exc)

    def created_all(self, jobs: list[FeaturedJob[Any]]) -> None:
        """`created` for a batch of jobs made in one step (a map's)."""
        if self.tracing:
            try:
                context = get_current()
            except Exception as exc:
                self._provider_failed(exc)
                return
            for job in jobs:
                job._span_context = context

    def started(self, job: Job[Any]) -> JobSpan | None:
        """Called in the worker as the job starts: open its span, make it current."""
        try:
            waited = job._t_started - job._t_submitted
            if self._waits is not None:
                self._waits.record(waited, self._attributes)
            if self._tracer is None:
                return None
            parent = job._span_context
            job._span_context = None  # type: ignore[misc]  # (a `FeaturedJob`)
            # The job's name and its span's: made once for a run of jobs of
            # one function (or given name), not per job.
            label = job._label
            names_of = job._fn if label is None else label
            if names_of is not self._names_of:
                name = job.name
                self._names = (name, f"run {name}")
                self._names_of = names_of
            name, span_name = self._names
            span = self._tracer.start_span(
                span_name,
                context=parent,
                kind=SpanKind.INTERNAL,
                attributes={POOL_NAME: self.name, JOB_NAME: name, JOB_WAIT: waited},
            )
            context = set_span_in_context(span, parent)
            return span, attach(context), context
        except Exception as exc:
            self._provider_failed(exc)
            return None

    def group_started(self, name: str) -> tuple[Span, Context] | None:
        """A job group opens (`Pool.group`): its span, child of the current
        one, and the context its jobs' spans take as their parent."""
        if self._tracer is None:
            return None
        try:
            parent = get_current()
            span = self._tracer.start_span(
                f"group {name}",
                context=parent,
                kind=SpanKind.INTERNAL,
                attributes={POOL_NAME: self.name, GROUP_NAME: name},
            )
            return span, trace.set_span_in_context(span, parent)
        except Exception as exc:
            self._provider_failed(exc)
            return None

    def group_ended(self, span: Span, failed: int, error: BaseException | None) -> None:
        """A job group's block ends: ``failed`` jobs failed, ``error`` leaves it."""
        try:
            if not span.is_recording():
                return
            span.set_attribute(GROUP_FAILED, failed)
            if error is not None:
                span.set_attribute(ERROR_TYPE, type(error).__qualname__)
                span.set_status(Status(StatusCode.ERROR, str(error)))
            span.end()
        except Exception as exc:
            self._provider_failed(exc)

    def ended(self, job: Job[Any], job_span: JobSpan | None) -> None:
        """Called in the worker once the job is done: record it, end its span."""
        try:
            failure = job._failure
            if failure is None:  # it succeeded
                error = None
                attributes = self._succeeded
            else:
                error = failure[0]
                state = job.state
                error_type = _error_type(state, error)
                attributes = {**self._outcome_attributes[state], ERROR_TYPE: error_type}
            durations = self._durations
            if job_span is None:
                if durations is not None:
                    durations.record(job._t_finished - job._t_started, attributes)
                return
            if durations is not None:  # (in the job's context: its exemplar)
                run = job._t_finished - job._t_started
                durations.record(run, attributes, job_span[2])
            span = job_span[0]
            if not span.is_recording():  # not sampled: nothing to add or end
                return
            span.set_attribute(JOB_OUTCOME, attributes[JOB_OUTCOME])
            if error is not None:
                span.set_attribute(ERROR_TYPE, attributes[ERROR_TYPE])
                span.set_status(Status(StatusCode.ERROR, str(error)))
                span.record_exception(error)
            span.end()
        except Exception as exc:
            self._provider_failed(exc)
        finally:
            if job_span is not None:  # the worker's context is restored anyway
                try:
                    detach(job_span[1])
                except Exception as exc:
                    self._provider_failed(exc)
