"""The trio_pool demo: a link checker against a real local website.

Run it with ``python3 -m nox -s demo`` (or ``python examples/demo.py``;
``--short`` for the test's smaller run: fewer pages, a longer time limit so
that a busy machine cannot make an answering page time out; ``--seed N`` for
another mix of pages). It

1. starts a website on 127.0.0.1 (a free port) whose pages are fast, slow,
   failing (500), missing (404) or hanging (`demo_site`);
2. checks a few hundred of its links with httpx through a pool that scales
   between 4 and 32 workers: ``await pool.submit`` waits for room
   (backpressure), each job has a time limit (the hanging pages), a failing
   page stays one failed job;
3. lets the pool shrink back, then takes a burst of requests the way a web
   handler would: ``submit_nowait``, and a 503 for each `PoolOverloaded`;
4. shuts down with ``shutdown(grace_period)``, also on Ctrl-C (SIGINT) or
   SIGTERM, after which it exits with 128 + the signal's number;
5. prints a summary, an excerpt of one trace, and the Prometheus metrics it
   scrapes from its own exporter (checked by ``promtool`` when installed).

A live view shows the work as it goes: refreshed ten times a second in a
terminal, a plain line every second otherwise (a log, a pipe, CI).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import random
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import trio
from opentelemetry import trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode
from prometheus_client import start_http_server
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Column, Table

import trio_pool

sys.path.insert(0, str(Path(__file__).parent))
from demo_site import serve

if TYPE_CHECKING:
    from collections.abc import Sequence

    import outcome

MIN_WORKERS = 4
MAX_WORKERS = 32
CAPACITY = 64
GRACE_PERIOD = 2.0
OUTCOMES = ("page ok", "dead link (4xx)", "failed (5xx)", "timed out", "cancelled")
"""How each accepted job ended, as the live view and the summary both say it."""
REFUSED = "refused (503)"
MIX = {"fast": 70, "slow": 15, "fail": 6, "missing": 5, "hang": 4}
SPARKS = "▁▂▃▄▅▆▇█"
SCOPE_LABELS = re.compile(r'otel_scope_\w+="[^"]*",?')

console = Console()


@dataclasses.dataclass(frozen=True)
class RunSize:
    """How much a run checks, and how its pages behave."""

    crawl: int
    """Links checked with ``await submit`` (backpressure)."""
    burst: int
    """Requests taken at once with ``submit_nowait`` (refusals)."""
    slow_page: float
    """Seconds a slow page takes to answer."""
    time_limit: float
    """Each job's time limit in seconds: what stops the hanging pages."""


FULL = RunSize(crawl=400, burst=300, slow_page=0.2, time_limit=1.0)
SHORT = RunSize(crawl=60, burst=120, slow_page=0.05, time_limit=3.0)
"""The quick run (the test's). Its pages answer in milliseconds, far inside the
time limit, the hanging ones hang until the site closes; only a machine so
busy that a page waits seconds for the CPU makes an answering page time out."""


class BackendError(Exception):
    """The page answered with a server error."""


async def check(client: httpx.AsyncClient, url: str) -> int:
    """Fetch ``url``; return its status (2xx or 4xx). A 5xx raises `BackendError`."""
    trace.get_current_span().set_attribute("url.full", url)  # the job's span
    response = await client.get(url)
    if response.status_code >= 500:
        raise BackendError(f"{url} answered {response.status_code}")
    return response.status_code


def links(base: str, count: int, rng: random.Random) -> list[str]:
    """``count`` links to the site, their kinds drawn from `MIX`."""
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=count)
    return [f"{base}/{kind}/{n}" for n, kind in enumerate(kinds)]


def outcome_of(job: trio_pool.Job[int], ended: outcome.Outcome[int]) -> str:
    """Which of `OUTCOMES` an ended job counts as."""
    if job.state is trio_pool.JobState.SUCCEEDED:
        return "page ok" if ended.unwrap() < 400 else "dead link (4xx)"
    return {
        trio_pool.JobState.FAILED: "failed (5xx)",
        trio_pool.JobState.TIMED_OUT: "timed out",
        trio_pool.JobState.CANCELLED: "cancelled",
    }[job.state]


class Demo:
    """The demo's state: the pool, what happened, and the live view."""

    def __init__(
        self, pool: trio_pool.Pool, client: httpx.AsyncClient, progress: Progress
    ) -> None:
        self.pool = pool
        self.client = client
        self.unfinished: list[trio_pool.Job[int]] = []  # accepted, not counted yet
        self.outcomes: Counter[str] = Counter(dict.fromkeys(OUTCOMES, 0))
        self.refused = 0  # requests of the burst answered 503
        self.workers: list[int] = []  # while the pool works, not while it stops
        self.phase = "start"
        self.progress = progress
        self.bar = progress.add_task("", total=None, info="")
        self.sample_workers()

    async def crawl(self, urls: Sequence[str], tracer: trace.Tracer) -> None:
        """Check every link; ``await submit`` waits whenever the pool is full."""
        self.phase = "crawl"
        with tracer.start_as_current_span("check links"):
            for url in urls:
                job = await self.pool.submit(check, self.client, url, name="check")
                self.unfinished.append(job)
        self.sample_workers()
        await self.pool.join()  # every job so far finished, the pool still open

    async def burst(self, urls: Sequence[str], tracer: trace.Tracer) -> None:
        """Take a burst of requests at once, as a web handler would."""
        self.phase = "burst"
        with tracer.start_as_current_span("handle burst"):
            for url in urls:
                self.handle_request(url)
        self.sample_workers()  # the pool grew for the burst at once
        await self.pool.join()  # every job so far finished, the pool still open

    def handle_request(self, url: str) -> None:
        """What a web handler does: accept the job now, or answer 503 now."""
        try:
            self.unfinished.append(self.pool.submit_nowait(check, self.client, url))
        except trio_pool.PoolOverloaded:
            self.refused += 1  # 503 Service Unavailable, Retry-After

    async def wait_for_shrink(self) -> None:
        """Wait until the idle workers above the minimum have retired."""
        self.phase = "shrink"
        while self.pool.statistics().workers > MIN_WORKERS:  # noqa: ASYNC110
            await trio.sleep(0.05)  # (the pool has no event for this; it polls)
        self.sample_workers()

    def sample_workers(self) -> None:
        """Note how many workers the pool runs, unless it is stopping."""
        if self.phase not in ("stop", "done"):
            self.workers.append(self.pool.statistics().workers)

    async def tally(self) -> None:
        """Count the jobs that ended since the last tally; read every outcome."""
        ended = [job for job in self.unfinished if job.done]
        self.unfinished = [job for job in self.unfinished if not job.done]
        with trio.CancelScope(shield=True):  # a job taken off the list is counted
            for job in ended:
                self.outcomes[outcome_of(job, await job.wait())] += 1

    def cancel_every_job(self) -> None:
        """Stop at once: cancel every accepted job that has not ended."""
        for job in self.unfinished:
            job.cancel()

    async def watch(self) -> None:
        """Refresh the live view ten times a second; sample the workers.

        In a terminal the view redraws in place; otherwise (a log, a pipe)
        a plain line is printed every second.
        """
        for tick in itertools.count(1):
            await self.tally()
            self.sample_workers()
            self.refresh()
            if not console.is_terminal and tick % 10 == 0:
                self.print_status_line()
            await trio.sleep(0.1)

    async def finish(self) -> None:
        """Count the last jobs and show the final state (the pool has exited)."""
        await self.tally()
        self.phase = "done"
        self.refresh()
        if not console.is_terminal:
            self.print_status_line()

    def counts(self) -> str:
        """How the jobs ended so far, and the refusals, in the summary's words."""
        return "  ".join(
            f"{label} {count}"
            for label, count in [*self.outcomes.items(), (REFUSED, self.refused)]
        )

    def pool_state(self) -> str:
        """The pool's queue and workers now, in words."""
        stats = self.pool.statistics()
        if stats.closed and stats.workers == 0:
            return "pool closed, every worker stopped"
        return (
            f"queued {stats.queued}, running {stats.running} on {stats.workers} workers"
        )

    def print_status_line(self) -> None:
        """Print the live view as one plain line (stdout is not a terminal)."""
        ended = sum(self.outcomes.values())
        accepted = self.pool.statistics().submitted
        console.print(
            f"{self.phase:<6} {ended}/{accepted} jobs ended: {self.counts()}"
            f" | {self.pool_state()}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )

    def refresh(self) -> None:
        """Show the counts and the pool's state in the live view."""
        self.progress.update(
            self.bar,
            description=self.phase,
            completed=sum(self.outcomes.values()),
            total=self.pool.statistics().submitted,
            info=f"{self.counts()}\n{self.pool_state()}",
        )


def live_view() -> Progress:
    """The live view: a bar and the counts, redrawn in a terminal only."""
    return Progress(
        TextColumn("[bold]{task.description}", table_column=Column(min_width=6)),
        BarColumn(bar_width=12),
        MofNCompleteColumn(table_column=Column(min_width=7)),
        TextColumn("{task.fields[info]}", table_column=Column(ratio=1)),  # wraps
        console=console,
        disable=not console.is_terminal,  # then `Demo.watch` prints lines
    )


async def watch_signals(
    work: trio.CancelScope,
    demo: Demo,
    received: list[int],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """SIGINT or SIGTERM: stop submitting and shut down; a second one: stop now."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            received.append(signum)
            name = signal.Signals(signum).name
            if len(received) == 1:
                console.print(
                    f"[yellow]{name}: shutting down (grace period "
                    f"{GRACE_PERIOD:g} s; {name} again to stop at once)"
                )
                work.cancel()
            else:
                console.print(f"[red]{name} again: cancelling every job")
                demo.cancel_every_job()


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted ``values``."""
    if not values:
        return math.nan
    return values[min(len(values) - 1, math.ceil(fraction * len(values)) - 1)]


def sparkline(samples: Sequence[int], width: int = 40) -> str:
    """Samples as a line of bars, at most ``width`` wide."""
    picked = [
        samples[i * len(samples) // width] for i in range(min(width, len(samples)))
    ]
    return "".join(
        SPARKS[min(len(SPARKS) - 1, (n * len(SPARKS)) // (MAX_WORKERS + 1))]
        for n in picked
    )


def summary(demo: Demo, spans: Sequence[ReadableSpan], elapsed: float) -> Table:
    """The final table: outcomes, latency, throughput, workers over time."""
    stats = demo.pool.statistics()
    durations = sorted(
        (span.end_time - span.start_time) / 1e9
        for span in spans
        if span.name.startswith("run ") and span.end_time and span.start_time
    )
    table = Table(title="link check: summary", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows: list[tuple[str, object]] = [
        ("accepted jobs", stats.submitted),
        *((f"  {label}", count) for label, count in demo.outcomes.items()),
        (REFUSED, demo.refused),
        (
            "latency p50 / p95 / p99",
            " / ".join(
                f"{percentile(durations, q) * 1000:.1f} ms" for q in (0.5, 0.95, 0.99)
            ),
        ),
        ("throughput", f"{stats.submitted / elapsed:.0f} jobs/s over {elapsed:.1f} s"),
        ("workers (min / max seen)", f"{min(demo.workers)} / {max(demo.workers)}"),
        ("workers over time", sparkline(demo.workers)),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def span_status(span: ReadableSpan) -> str:
    """A span's status in plain words: ``ok``, or ``error`` and its type."""
    if span.status.status_code is not StatusCode.ERROR:
        return "ok"
    return f"error: {(span.attributes or {}).get('error.type')}"


def trace_excerpt(spans: Sequence[ReadableSpan]) -> str:
    """The crawl's span and a few of its job spans, as a tree."""
    root = next(span for span in spans if span.name == "check links")
    children = [
        span
        for span in spans
        if span.parent is not None
        and root.context is not None
        and span.parent.span_id == root.context.span_id
    ]
    shown: dict[str, ReadableSpan] = {}
    for span in children:
        attributes = span.attributes or {}
        shown.setdefault(str(attributes.get("trio_pool.job.outcome")), span)
    lines = [f"{root.name}  ({len(children)} job spans are its children)"]
    for span in shown.values():
        attributes = span.attributes or {}
        assert span.end_time is not None
        assert span.start_time is not None
        waited = float(attributes.get("trio_pool.job.wait.duration", 0))  # type: ignore[arg-type]
        lines.append(
            f"├─ {span.name}  {attributes.get('url.full')}  "
            f"{str(attributes.get('trio_pool.job.outcome')).replace('_', ' ')}, "
            f"span status {span_status(span)}, "
            f"waited {waited * 1e3:.1f} ms, "
            f"ran {(span.end_time - span.start_time) / 1e6:.1f} ms"
        )
    lines.append(f"└─ … {len(children) - len(shown)} more")
    return "\n".join(lines)


async def scrape(client: httpx.AsyncClient, port: int) -> str:
    """Read the metrics from the demo's own Prometheus endpoint."""
    response = await client.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    return response.text


def metrics_excerpt(exposition: str) -> str:
    """The pool's lines of the scrape: counters and the duration histogram."""
    lines = [
        SCOPE_LABELS.sub("", line)
        for line in exposition.splitlines()
        if line.startswith("trio_pool")
    ]
    buckets = [line for line in lines if "job_duration_seconds_bucket" in line]
    others = [line for line in lines if "_bucket" not in line and "wait" not in line]
    shown = 6
    more = [f"... {len(buckets) - shown} more buckets"] if len(buckets) > shown else []
    return "\n".join(
        [
            "(the otel_scope_* labels are left out here)",
            *buckets[:shown],
            *more,
            *others,
        ]
    )


def promtool_verdict(exposition: str) -> str:
    """``promtool check metrics`` on the scrape, if promtool is installed."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return "promtool not installed: not checked"
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        check=False,
    )
    problems = (checked.stdout + checked.stderr).strip()
    if checked.returncode == 0 and not problems:
        return "promtool check metrics: OK"
    return f"promtool check metrics: exit {checked.returncode}\n{problems}"


async def main(size: RunSize, seed: int) -> int:
    """Run the demo; return the exit status."""
    rng = random.Random(seed)
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = tracer_provider.get_tracer("demo")
    meter_provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
    exporter, exporter_thread = start_http_server(0, addr="127.0.0.1")
    metrics_port = exporter.server_port

    received: list[int] = []
    work = trio.CancelScope()  # what the first signal stops
    with serve(slow=size.slow_page) as site:
        crawl_urls = links(site.url, size.crawl, rng)
        burst_urls = links(site.url, size.burst, rng)
        timeout = httpx.Timeout(30)  # the pool's time limit stops hanging pages
        limits = httpx.Limits(max_connections=MAX_WORKERS)
        async with (
            httpx.AsyncClient(timeout=timeout, limits=limits) as client,
            trio.open_nursery() as signals,
        ):
            start = trio.current_time()
            with live_view() as progress:
                async with trio_pool.open_pool(
                    MIN_WORKERS,
                    max_workers=MAX_WORKERS,
                    capacity=CAPACITY,
                    idle_timeout=0.3,
                    job_timeout=size.time_limit,
                    name="link-checker",
                    tracer_provider=tracer_provider,
                    meter_provider=meter_provider,
                ) as pool:
                    demo = Demo(pool, client, progress)
                    await signals.start(watch_signals, work, demo, received)
                    console.print(
                        f"website on {site.url}; metrics on "
                        f"http://127.0.0.1:{metrics_port}/metrics; each job's "
                        f"time limit {size.time_limit:g} s; Ctrl-C stops gracefully",
                        soft_wrap=True,
                    )
                    async with trio.open_nursery() as view:
                        view.start_soon(demo.watch)
                        with work:
                            await demo.crawl(crawl_urls, tracer)
                            await demo.wait_for_shrink()
                            await demo.burst(burst_urls, tracer)
                            await demo.wait_for_shrink()
                        demo.phase = "stop"
                        await pool.shutdown(grace_period=GRACE_PERIOD)
                        view.cancel_scope.cancel()
                await demo.finish()  # every job has ended: the pool has exited
            elapsed = trio.current_time() - start
            exposition = await scrape(client, metrics_port)
            signals.cancel_scope.cancel()
    exporter.shutdown()
    exporter_thread.join()

    finished = spans.get_finished_spans()
    console.print(summary(demo, finished, elapsed))
    console.print("\n[bold]one trace[/bold]")
    console.print(
        trace_excerpt(finished), highlight=False, markup=False, soft_wrap=True
    )
    console.print(f"\n[bold]Prometheus scrape[/bold] ({len(exposition):,} bytes)")
    console.print(
        metrics_excerpt(exposition), highlight=False, markup=False, soft_wrap=True
    )
    console.print(promtool_verdict(exposition), highlight=False)
    return 128 + received[0] if received else 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description="The trio_pool demo: a link checker.")
    parser.add_argument(
        "--short",
        action="store_true",
        help="the smaller run the test makes (fewer pages, a 3 s time limit)",
    )
    parser.add_argument("--seed", type=int, default=42, help="the mix of pages")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args(sys.argv[1:])
    sys.exit(trio.run(main, SHORT if args.short else FULL, args.seed))
