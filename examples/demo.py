"""The trio_pool demo: a link checker against a real local website.

Run it with ``python3 -m nox -s demo`` (or ``python examples/demo.py``;
``--short`` for a quick run, ``--seed N`` for another mix of pages). It

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

A live view refreshed from `Pool.statistics` shows the work as it goes.
"""

from __future__ import annotations

import argparse
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
from prometheus_client import start_http_server
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

import trio_pool

sys.path.insert(0, str(Path(__file__).parent))
from demo_site import serve

if TYPE_CHECKING:
    from collections.abc import Sequence

MIN_WORKERS = 4
MAX_WORKERS = 32
CAPACITY = 64
GRACE_PERIOD = 2.0
MIX = {"fast": 70, "slow": 15, "fail": 6, "missing": 5, "hang": 4}
SPARKS = "▁▂▃▄▅▆▇█"
SCOPE_LABELS = re.compile(r'otel_scope_\w+="[^"]*",?')

console = Console()


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


class Demo:
    """The demo's state: the pool, what happened, and the live view."""

    def __init__(self, pool: trio_pool.Pool, client: httpx.AsyncClient) -> None:
        self.pool = pool
        self.client = client
        self.jobs: list[trio_pool.Job[int]] = []  # every accepted job
        self.statuses: Counter[int] = Counter()
        self.responses = 0  # 503s answered to the burst
        self.refused = 0
        self.workers: list[int] = []  # sampled every tenth of a second
        self.phase = "starting"
        self.progress = Progress(
            TextColumn("[bold]{task.description:<5}"),
            BarColumn(bar_width=12),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=False,
        )
        self.bar = self.progress.add_task("", total=None, info="")

    async def crawl(self, urls: Sequence[str], tracer: trace.Tracer) -> None:
        """Check every link; ``await submit`` waits whenever the pool is full."""
        self.phase = "crawl"
        with tracer.start_as_current_span("check links"):
            for url in urls:
                job = await self.pool.submit(check, self.client, url, name="check")
                self.jobs.append(job)
        await self.pool.join()  # every job so far finished, the pool still open

    async def burst(self, urls: Sequence[str], tracer: trace.Tracer) -> None:
        """Take a burst of requests at once, as a web handler would."""
        self.phase = "burst"
        with tracer.start_as_current_span("handle burst"):
            for url in urls:
                self.handle_request(url)
        await self.pool.join()  # every job so far finished, the pool still open

    def handle_request(self, url: str) -> None:
        """What a web handler does: accept the job now, or answer 503 now."""
        try:
            self.jobs.append(self.pool.submit_nowait(check, self.client, url))
        except trio_pool.PoolOverloaded:
            self.refused += 1  # 503 Service Unavailable, Retry-After

    async def collect(self) -> None:
        """Count the statuses of the pages that answered; read every outcome."""
        for job in self.jobs:
            result = await job.wait()
            if job.state is trio_pool.JobState.SUCCEEDED:
                self.statuses[result.unwrap()] += 1

    async def wait_for_shrink(self) -> None:
        """Wait until the idle workers above the minimum have retired."""
        self.phase = "shrink"
        while self.pool.statistics().workers > MIN_WORKERS:  # noqa: ASYNC110
            await trio.sleep(0.05)  # (the pool has no event for this; it polls)

    async def watch(self) -> None:
        """Refresh the live view ten times a second; sample the workers."""
        while True:
            self.workers.append(self.refresh().workers)
            await trio.sleep(0.1)

    def refresh(self) -> trio_pool.PoolStatistics:
        """Show the pool's statistics in the live view; return them."""
        stats = self.pool.statistics()
        finished = stats.succeeded + stats.failed + stats.timed_out + stats.cancelled
        info = (
            f"ok {stats.succeeded} failed {stats.failed} "
            f"timeout {stats.timed_out} 503 {self.refused} "
            f"queued {stats.queued} busy {stats.running}/{stats.workers}"
        )
        self.progress.update(
            self.bar,
            description=self.phase,
            completed=finished,
            total=stats.submitted,
            info=info,
        )
        return stats


async def watch_signals(
    work: trio.CancelScope,
    everything: trio.CancelScope,
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
                everything.cancel()


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted ``values``."""
    if not values:
        return math.nan
    return values[min(len(values) - 1, math.ceil(fraction * len(values)) - 1)]


def sparkline(samples: Sequence[int]) -> str:
    """Samples as a line of bars, at most 60 wide."""
    if not samples:
        return ""
    step = max(1, len(samples) // 60)
    picked = samples[::step]
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
    ok = sum(n for status, n in demo.statuses.items() if status < 400)
    rows = [
        ("accepted jobs", stats.submitted),
        ("  succeeded: page ok", ok),
        ("  succeeded: dead link (4xx)", stats.succeeded - ok),
        ("  failed (5xx)", stats.failed),
        ("  timed out (hanging page)", stats.timed_out),
        ("  cancelled", stats.cancelled),
        ("refused at once (503)", demo.refused),
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
            f"outcome={attributes.get('trio_pool.job.outcome')}  "
            f"status={span.status.status_code.name}  "
            f"waited={waited * 1e3:.1f} ms  "
            f"ran={(span.end_time - span.start_time) / 1e6:.1f} ms"
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
    return "\n".join(
        [
            "(the otel_scope_* labels are left out here)",
            *buckets[:6],
            f"... {len(buckets) - 6} more buckets",
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


async def main(short: bool, seed: int) -> int:
    """Run the demo; return the exit status."""
    rng = random.Random(seed)
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = tracer_provider.get_tracer("demo")
    meter_provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
    exporter, exporter_thread = start_http_server(0, addr="127.0.0.1")
    metrics_port = exporter.server_port

    crawl_size, burst_size = (60, 120) if short else (400, 300)
    received: list[int] = []
    with serve(slow=0.05 if short else 0.2) as site:
        crawl_urls = links(site.url, crawl_size, rng)
        burst_urls = links(site.url, burst_size, rng)
        timeout = httpx.Timeout(30)  # the pool's time limit stops hanging pages
        limits = httpx.Limits(max_connections=MAX_WORKERS)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                everything = nursery.cancel_scope
                work = trio.CancelScope()
                await nursery.start(watch_signals, work, everything, received)
                console.print(
                    f"website on {site.url}; metrics on "
                    f"http://127.0.0.1:{metrics_port}/metrics; Ctrl-C stops gracefully"
                )
                async with trio_pool.open_pool(
                    MIN_WORKERS,
                    max_workers=MAX_WORKERS,
                    capacity=CAPACITY,
                    idle_timeout=0.3,
                    job_timeout=0.5 if short else 1.0,
                    name="link-checker",
                    tracer_provider=tracer_provider,
                    meter_provider=meter_provider,
                ) as pool:
                    demo = Demo(pool, client)
                    nursery.start_soon(demo.watch)
                    with demo.progress:
                        with work:
                            await demo.crawl(crawl_urls, tracer)
                            await demo.wait_for_shrink()
                            await demo.burst(burst_urls, tracer)
                            await demo.wait_for_shrink()
                        demo.phase = "stop"
                        await pool.shutdown(grace_period=GRACE_PERIOD)
                        await demo.collect()
                        demo.phase = "done"
                        demo.refresh()
                nursery.cancel_scope.cancel()
            elapsed = trio.current_time() - start
            exposition = await scrape(client, metrics_port)
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
    parser.add_argument("--short", action="store_true", help="a quick run")
    parser.add_argument("--seed", type=int, default=42, help="the mix of pages")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args(sys.argv[1:])
    sys.exit(trio.run(main, args.short, args.seed))
