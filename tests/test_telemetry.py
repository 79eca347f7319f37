"""OpenTelemetry through the real SDK: spans, parents, baggage, metrics, logs."""

from __future__ import annotations

import logging
import shutil
import sys
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, SpanKind, StatusCode

import trio_pool
from trio_pool._telemetry import SCHEMA_URL

from .helpers import books


class Telemetry:
    """A tracer provider and a meter provider of the test's own."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.tracer_provider.get_tracer("tests")

    def pool(self, workers: int, **kwargs: Any) -> Any:
        return trio_pool.open_pool(
            workers,
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            **kwargs,
        )

    def finished(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    def points(self, metric_name: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, value) of each point; a histogram's value is its count."""
        data = self.reader.get_metrics_data()
        found: list[tuple[dict[str, Any], Any]] = []
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != metric_name:
                        continue
                    for point in metric.data.data_points:
                        value: Any = getattr(point, "value", None)
                        if value is None:
                            value = getattr(point, "count")  # noqa: B009
                        found.append((dict(point.attributes or {}), value))
        return found


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    value: int = span.context.span_id
    return value


@pytest.fixture
def otel() -> Telemetry:
    return Telemetry()


async def work(seconds: float) -> str:
    await trio.sleep(seconds)
    return "done"


async def test_span_per_job_parented_at_each_submitter(
    otel: Telemetry, autojump_clock: trio.abc.Clock
) -> None:
    async def submitter(pool: trio_pool.Pool, index: int) -> None:
        with otel.tracer.start_as_current_span(f"request {index}"):
            for _ in range(3):
                await pool.submit(work, index, name=f"job of {index}")

    async with otel.pool(2, name="p") as pool:
        with otel.tracer.start_as_current_span("opened here"):
            async with trio.open_nursery() as nursery:
                for index in range(4):
                    nursery.start_soon(submitter, pool, index)
    for index in range(4):
        (request,) = otel.finished(f"request {index}")
        jobs = otel.finished(f"run job of {index}")
        assert len(jobs) == 3
        for span in jobs:
            assert span.parent is not None
            assert span.parent.span_id == span_id(request)
            assert span.kind is SpanKind.INTERNAL
            assert span.attributes is not None
            assert span.attributes["trio_pool.name"] == "p"
            assert span.attributes["trio_pool.job.name"] == f"job of {index}"
            assert span.attributes["trio_pool.job.outcome"] == "succeeded"
            wait = span.attributes["trio_pool.job.wait.duration"]
            assert isinstance(wait, float)
            assert wait >= 0
            assert span.status.status_code is StatusCode.UNSET
            assert span.instrumentation_scope is not None
            assert span.instrumentation_scope.name == "trio_pool"
            assert span.instrumentation_scope.version == trio_pool.__version__
            assert span.instrumentation_scope.schema_url == SCHEMA_URL


async def test_wait_duration_attribute_is_queue_time(
    otel: Telemetry, autojump_clock: trio.abc.Clock
) -> None:
    async with otel.pool(1) as pool:
        await pool.submit(work, 3, name="first")
        await pool.submit(work, 1, name="second")
    (second,) = otel.finished("run second")
    assert second.attributes is not None
    assert second.attributes["trio_pool.job.wait.duration"] == 3


async def test_baggage_and_nested_spans_travel_into_the_job(
    otel: Telemetry, autojump_clock: trio.abc.Clock
) -> None:
    seen: list[object] = []

    async def child() -> None:
        with otel.tracer.start_as_current_span("in a task the job started"):
            await trio.sleep(1)

    async def job() -> None:
        seen.append(baggage.get_baggage("tenant"))
        with otel.tracer.start_as_current_span("inside the job"):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(child)

    async with otel.pool(2) as pool:
        token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
        try:
            await pool.submit(job, name="job")
        finally:
            otel_context.detach(token)
        await pool.submit(job, name="job")  # submitted without baggage
    assert seen == ["acme", None]
    job_spans = otel.finished("run job")
    inside = otel.finished("inside the job")
    grandchildren = otel.finished("in a task the job started")
    assert len(job_spans) == len(inside) == len(grandchildren) == 2
    job_ids = {span_id(span) for span in job_spans}
    inside_ids = {span_id(span) for span in inside}
    assert {span.parent.span_id for span in inside if span.parent} == job_ids
    assert {s.parent.span_id for s in grandchildren if s.parent} == inside_ids
    assert all(span.parent is None for span in job_spans)  # no span at submit


async def test_worker_context_is_clean_between_jobs(
    otel: Telemetry, autojump_clock: trio.abc.Clock
) -> None:
    current: list[object] = []

    async def record() -> None:
        current.append(trace.get_current_span().get_span_context().span_id)
        await trio.lowlevel.checkpoint()

    async with otel.pool(1) as pool:
        with otel.tracer.start_as_current_span("outer"):
            await pool.submit(record, name="a")
        await pool.submit(record, name="b")
    spans = {span.name: span for span in otel.spans.get_finished_spans()}
    assert current == [
        span_id(spans["run a"]),
        span_id(spans["run b"]),
    ]
    assert spans["run b"].parent is None
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_failure_timeout_and_cancellation_are_marked(
    otel: Telemetry,
    autojump_clock: trio.abc.Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def boom() -> None:
        await trio.sleep(1)
        raise KeyError("missing")

    async with otel.pool(3, job_timeout=5) as pool:
        await pool.submit(boom, name="boom")
        await pool.submit(work, 10, name="slow")
        victim = await pool.submit(work, 10, name="victim")
        await trio.sleep(2)
        victim.cancel()
    (failed,) = otel.finished("run boom")
    (slow,) = otel.finished("run slow")
    (cancelled,) = otel.finished("run victim")
    expectations = [
        (failed, "failed", "KeyError"),
        (slow, "timed_out", "timeout"),
        (cancelled, "cancelled", "cancelled"),
    ]
    for span, outcome_name, error_type in expectations:
        assert span.attributes is not None
        assert span.attributes["trio_pool.job.outcome"] == outcome_name
        assert span.attributes["error.type"] == error_type
        assert span.status.status_code is StatusCode.ERROR
        assert [event.name for event in span.events] == ["exception"]
    assert failed.status.description == "'missing'"
    assert failed.events[0].attributes is not None
    assert failed.events[0].attributes["exception.type"] == "KeyError"
    # The failure was logged, with the job's span current at the time.
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.name == "trio_pool"
    assert record.exc_info is not None
    assert record.exc_info[0] is KeyError


async def test_failure_is_logged_while_its_span_is_current(
    otel: Telemetry, autojump_clock: trio.abc.Clock
) -> None:
    span_ids: list[int] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            span_ids.append(trace.get_current_span().get_span_context().span_id)

    handler = Capture(level=logging.DEBUG)
    logger = logging.getLogger("trio_pool")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:

        async def boom() -> None:
            raise RuntimeError("x")

        async with otel.pool(1) as pool:
            job = await pool.submit(boom, name="boom")
            await job.wait()  # retrieved: only the DEBUG record, in the span
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    (span,) = otel.finished("run boom")
    assert span_id(span) in span_ids


async def test_every_metric_while_running_and_after(
    otel: Telemetry, autojump_clock: trio.abc.Clock
) -> None:
    async def boom() -> None:
        await trio.sleep(1)
        raise ValueError("bad")

    async with otel.pool(2, capacity=2, name="m", job_timeout=50, timings=True) as pool:
        for _ in range(4):
            await pool.submit(work, 10)
        with pytest.raises(trio_pool.PoolOverloaded):
            pool.submit_nowait(work, 1)
        await trio.testing.wait_all_tasks_blocked()
        name = {"trio_pool.name": "m"}
        assert otel.points("trio_pool.queue.length") == [(name, 2)]
        assert otel.points("trio_pool.queue.limit") == [(name, 2)]
        assert otel.points("trio_pool.worker.limit") == [(name, 2)]
        assert sorted(otel.points("trio_pool.workers"), key=str) == sorted(
            [
                ({**name, "trio_pool.worker.state": "busy"}, 2),
                ({**name, "trio_pool.worker.state": "idle"}, 0),
            ],
            key=str,
        )
        assert otel.points("trio_pool.submitted_jobs") == [(name, 4)]
        assert otel.points("trio_pool.rejected_jobs") == [
            ({**name, "trio_pool.rejection.reason": "overloaded"}, 1)
        ]
        assert otel.points("trio_pool.job.wait.duration") == [(name, 2)]
        await trio.sleep(25)
        await pool.submit(boom)
        await pool.submit(work, 100)  # times out after 50 s
        pool.close()
        with pytest.raises(trio_pool.PoolClosed):
            await pool.submit(work, 1)
    assert otel.points("trio_pool.submitted_jobs") == [(name, 6)]
    assert sorted(otel.points("trio_pool.rejected_jobs"), key=str) == sorted(
        [
            ({**name, "trio_pool.rejection.reason": "overloaded"}, 1),
            ({**name, "trio_pool.rejection.reason": "closed"}, 1),
        ],
        key=str,
    )
    durations = {
        tuple(sorted(attributes.items())): count
        for attributes, count in otel.points("trio_pool.job.duration")
    }
    assert durations == {
        (("trio_pool.job.outcome", "succeeded"), ("trio_pool.name", "m")): 4,
        (
            ("error.type", "ValueError"),
            ("trio_pool.job.outcome", "failed"),
            ("trio_pool.name", "m"),
        ): 1,
        (
            ("error.type", "timeout"),
            ("trio_pool.job.outcome", "timed_out"),
            ("trio_pool.name", "m"),
        ): 1,
    }
    # The pool has stopped: its gauges report nothing more.
    assert otel.points("trio_pool.queue.length") == []


async def test_duration_histogram_records_running_time(
    otel: Telemetry, autojump_clock: trio.abc.Clock
) -> None:
    async with otel.pool(1) as pool:
        await pool.submit(work, 3)
        await pool.submit(work, 4)
    data = otel.reader.get_metrics_data()
    assert data is not None
    (metric,) = [
        m
        for r in data.resource_metrics
        for s in r.scope_metrics
        for m in s.metrics
        if m.name == "trio_pool.job.duration"
    ]
    assert metric.unit == "s"
    (point,) = metric.data.data_points
    assert point.sum == 7  # type: ignore[union-attr]


async def test_two_pools_on_one_meter(
    otel: Telemetry, autojump_clock: trio.abc.Clock
) -> None:
    async with otel.pool(2, name="a") as a, otel.pool(5, name="b") as b:
        await a.submit(work, 1)
        await b.submit(work, 1)
        await b.submit(work, 1)
        limits = {
            attributes["trio_pool.name"]: value
            for attributes, value in otel.points("trio_pool.worker.limit")
        }
        assert limits == {"a": 2, "b": 5}
        submitted = {
            attributes["trio_pool.name"]: value
            for attributes, value in otel.points("trio_pool.submitted_jobs")
        }
        assert submitted == {"a": 1, "b": 2}


async def test_telemetry_false_emits_nothing(
    otel: Telemetry, autojump_clock: trio.abc.Clock
) -> None:
    async with otel.pool(2, telemetry=False) as pool:
        await pool.run(work, 1)
        with otel.tracer.start_as_current_span("outer"):
            await pool.run(work, 1)
        assert not books(pool).telemetry
    assert [s.name for s in otel.spans.get_finished_spans()] == ["outer"]
    data = otel.reader.get_metrics_data()
    assert data is None or all(
        not scope.metrics
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
    )


async def test_api_defaults_cost_nothing() -> None:
    async with trio_pool.open_pool(1) as pool:  # no SDK configured globally
        assert not books(pool).telemetry
        assert await pool.run(work, 0) == "done"


async def test_bad_telemetry_argument() -> None:
    with pytest.raises(TypeError, match="telemetry must be True or False, not 1"):
        trio_pool.open_pool(1, telemetry=1)  # type: ignore[arg-type]


async def test_prometheus_exposition_passes_promtool(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The metric names survive a real Prometheus exporter and promtool."""
    prometheus_client = pytest.importorskip("prometheus_client")
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: nox installs it (noxfile.py)"
    registry = prometheus_client.CollectorRegistry()
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])

    async def boom() -> None:
        raise ValueError("x")

    async with trio_pool.open_pool(
        2, name="prom", meter_provider=provider, timings=True
    ) as pool:
        await pool.submit(work, 1)
        await pool.submit(boom)
        await trio.sleep(2)
        text = prometheus_client.generate_latest(registry)
    result = await trio.run_process(
        [promtool, "check", "metrics"],
        stdin=text,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    exposition = text.decode()
    for name in [
        "trio_pool_submitted_jobs",
        "trio_pool_job_duration_seconds_bucket",
        "trio_pool_job_wait_duration_seconds_count",
        "trio_pool_queue_length",
        "trio_pool_queue_limit",
        "trio_pool_workers",
        "trio_pool_worker_limit",
    ]:
        assert name in exposition, name


async def test_counts_come_from_the_pool_and_outlive_it(
    otel: Telemetry, autojump_clock: trio.abc.Clock
) -> None:
    # The counters are observed from the pool's own counts (no work per job);
    # a closed pool's counts stay under its name, and pools of one name add up.
    name = {"trio_pool.name": "same"}
    async with otel.pool(1, capacity=0, name="same") as pool:
        await pool.run(work, 1)
        pool.submit_nowait(work, 1)  # to the idle worker
        with pytest.raises(trio_pool.PoolOverloaded):
            pool.submit_nowait(work, 1)  # no room: capacity 0
        assert otel.points("trio_pool.submitted_jobs") == [(name, 2)]
    async with otel.pool(2, name="same") as pool:
        await pool.run(work, 1)
        with (
            trio.move_on_after(0.5),  # jobs here take 1 s
            pytest.raises(trio_pool.PoolOverloaded, match="deadline"),
        ):
            await pool.submit(work, 1, shed=True)
        pool.close()
        with pytest.raises(trio_pool.PoolClosed):
            pool.submit_nowait(work, 1)
        assert otel.points("trio_pool.submitted_jobs") == [(name, 3)]
    assert otel.points("trio_pool.submitted_jobs") == [(name, 3)]
    assert sorted(otel.points("trio_pool.rejected_jobs"), key=str) == sorted(
        [
            ({**name, "trio_pool.rejection.reason": reason}, 1)
            for reason in ("overloaded", "closed", "deadline")
        ],
        key=str,
    )


async def test_queue_waits_are_recorded_only_in_pools_that_keep_timings(
    otel: Telemetry, autojump_clock: trio.abc.Clock
) -> None:
    async with otel.pool(1, name="untimed") as pool:
        await pool.run(work, 1)
    assert otel.points("trio_pool.job.wait.duration") == []
    assert otel.points("trio_pool.job.duration") != []  # the per-job record
    async with otel.pool(1, name="timed", timings=True) as pool:
        await pool.run(work, 1)
    assert otel.points("trio_pool.job.wait.duration") == [
        ({"trio_pool.name": "timed"}, 1)
    ]


async def test_a_span_that_is_not_sampled_costs_no_attribute_work(
    autojump_clock: trio.abc.Clock,
) -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF)
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    seen: list[object] = []
    real = NonRecordingSpan.set_attribute

    def spy(self: NonRecordingSpan, key: str, value: object) -> None:
        seen.append(key)
        real(self, key, value)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(NonRecordingSpan, "set_attribute", spy)
        async with trio_pool.open_pool(1, tracer_provider=provider) as pool:

            async def fail() -> None:
                raise ValueError("not recorded")

            await pool.run(work, 1)
            await (await pool.submit(fail)).wait()
    assert seen == []
    assert spans.get_finished_spans() == ()


async def test_jobs_run_back_to_back_each_in_its_own_span(
    otel: Telemetry, autojump_clock: trio.abc.Clock
) -> None:
    """A worker that ends a job and starts the next in one step ends the
    first one's span and makes the next one's current: each job runs in its
    own span, named after its function or given name as they alternate."""
    current: list[int] = []

    async def first() -> None:
        current.append(trace.get_current_span().get_span_context().span_id)

    async def second() -> None:
        current.append(trace.get_current_span().get_span_context().span_id)

    plan = [
        (first, None),
        (first, None),
        (second, None),
        (first, "given"),
        (first, None),
        (second, "given"),
        (second, "other"),
    ]
    async with otel.pool(1, capacity=len(plan)) as pool:
        with otel.tracer.start_as_current_span("request") as request:
            # queued at once: the worker runs them back to back
            jobs = [pool.submit_nowait(fn, name=name) for fn, name in plan]
    spans = [s for s in otel.spans.get_finished_spans() if s.name != "request"]
    assert [span.name for span in spans] == [f"run {job.name}" for job in jobs]
    assert [job.name for job in jobs][2:4] == [second.__qualname__, "given"]
    assert [span_id(span) for span in spans] == current
    for span, job in zip(spans, jobs, strict=True):
        assert span.attributes is not None
        assert span.attributes["trio_pool.job.name"] == job.name
        assert span.parent is not None
        assert span.parent.span_id == request.get_span_context().span_id


async def test_a_map_s_jobs_get_what_submitted_jobs_get(
    otel: Telemetry, autojump_clock: trio.abc.Clock
) -> None:
    """A map's jobs, made and offered in batches (the submitter's context
    read once per batch), get what a submitted job gets: a span, child of
    the caller's span and current while the job runs, with its attributes;
    a duration record whose exemplar is that span."""
    delays = [0.0002, 0.003, 0.02, 0.3, 2.0]  # one bucket of the histogram each
    current: dict[float, int] = {}

    async def nap(delay: float) -> float:
        current[delay] = trace.get_current_span().get_span_context().span_id
        await trio.sleep(delay)
        return delay

    async with otel.pool(2, capacity=8, name="m", timings=True) as pool:
        with otel.tracer.start_as_current_span("request") as request:
            async with pool.map(nap, delays[:4], name="nap") as results:
                assert [delay async for delay in results] == delays[:4]
            assert await pool.run(nap, delays[4], name="nap") == delays[4]
    spans = otel.finished("run nap")
    assert sorted(span_id(span) for span in spans) == sorted(current.values())
    delay_of = {span_id: delay for delay, span_id in current.items()}
    # two workers: the third job waits for the first, the fourth for the second
    waited = {0.0002: 0, 0.003: 0, 0.02: 0.0002, 0.3: 0.003, 2.0: 0}
    for span in spans:
        assert span.parent is not None
        assert span.parent.span_id == request.get_span_context().span_id
        assert span.attributes is not None
        assert span.attributes["trio_pool.name"] == "m"
        assert span.attributes["trio_pool.job.name"] == "nap"
        assert span.attributes["trio_pool.job.outcome"] == "succeeded"
        wait = span.attributes["trio_pool.job.wait.duration"]
        assert wait == pytest.approx(waited[delay_of[span_id(span)]])
    data = otel.reader.get_metrics_data()  # (a collection takes the exemplars)
    assert data is not None
    (point,) = [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "trio_pool.job.duration"
        for point in metric.data.data_points
    ]
    assert point.attributes == {
        "trio_pool.name": "m",
        "trio_pool.job.outcome": "succeeded",
    }
    exemplars = sorted(point.exemplars, key=lambda exemplar: exemplar.value)
    assert [exemplar.value for exemplar in exemplars] == pytest.approx(delays)
    assert [exemplar.span_id for exemplar in exemplars] == [
        current[delay] for delay in delays
    ]
    trace_id = request.get_span_context().trace_id
    assert {exemplar.trace_id for exemplar in exemplars} == {trace_id}
    assert otel.points("trio_pool.job.wait.duration") == [({"trio_pool.name": "m"}, 5)]


async def test_a_map_s_jobs_are_made_in_batches_in_a_traced_pool(
    otel: Telemetry,
) -> None:
    """A traced pool (and so a timed one) makes a map's jobs as a plain pool
    does, a batch at a time: no `make_job` per job, the submitter's context
    read once per batch (`created_all`), not once per job (`created`)."""
    calls: dict[str, int] = {}

    def profile(frame: Any, event: str, arg: object) -> None:
        if event == "call" and "trio_pool" in frame.f_code.co_filename:
            name = frame.f_code.co_name
            calls[name] = calls.get(name, 0) + 1

    async def noop(_: int) -> None:
        pass

    jobs = 1_000
    async with otel.pool(8, capacity=64) as pool:
        previous = sys.getprofile()
        sys.setprofile(profile)
        try:
            async with pool.map(noop, range(jobs)) as results:
                async for _ in results:
                    pass
        finally:
            sys.setprofile(previous)
    assert calls.get("make_job", 0) == 0
    assert calls.get("created", 0) == 0
    assert 0 < calls["created_all"] <= jobs // 8
    assert calls["started"] == calls["ended"] == jobs
