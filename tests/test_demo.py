"""The demo, end to end: as the README's first command runs it, and interrupted."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"
DEMO = EXAMPLES / "demo.py"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def demo_links(crawl_size: int, burst_size: int) -> tuple[list[str], list[str]]:
    """The kinds of the crawl's and the burst's links, as the demo draws them."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        from demo import links
    finally:
        sys.path.remove(str(EXAMPLES))
    rng = random.Random(42)  # the demo's default seed
    crawl = [url.split("/")[1] for url in links("", crawl_size, rng)]
    burst = [url.split("/")[1] for url in links("", burst_size, rng)]
    return crawl, burst


def row(output: str, label: str) -> str:
    """The value in the summary table's row ``label``."""
    match = re.search(rf"│ +{re.escape(label)} +│ +(.+?) │", output)
    assert match is not None, f"no row {label!r} in:\n{output}"
    return match.group(1)


def test_demo_short_run_checks_itself() -> None:
    done = subprocess.run(
        [sys.executable, str(DEMO), "--short"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=ENV,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "WARNING" not in done.stderr  # every failure was retrieved
    # The outcomes follow from the seeded mix of pages.
    crawl, burst = demo_links(60, 120)  # the short run's sizes
    accepted = int(row(out, "accepted jobs"))
    refused = int(row(out, "refused at once (503)"))
    assert accepted + refused == len(crawl) + len(burst)
    assert refused > 0
    kinds = Counter(crawl + burst[: accepted - len(crawl)])  # the burst's head fits
    assert int(row(out, "succeeded: page ok")) == kinds["fast"] + kinds["slow"]
    assert int(row(out, "succeeded: dead link (4xx)")) == kinds["missing"]
    assert int(row(out, "failed (5xx)")) == kinds["fail"]
    assert int(row(out, "timed out (hanging page)")) == kinds["hang"]
    assert int(row(out, "cancelled")) == 0
    assert row(out, "workers (min / max seen)") == "4 / 32"  # scaled up and back
    # A trace: the crawl's span has every crawl job's span as a child.
    assert f"check links  ({len(crawl)} job spans are its children)" in out
    assert "outcome=timed_out  status=ERROR" in out
    # The metrics, scraped from the demo's own Prometheus endpoint.
    assert "trio_pool_job_duration_seconds_bucket{" in out
    submitted = 'trio_pool_submitted_jobs_total{trio_pool_name="link-checker"} '
    assert f"{submitted}{accepted}.0" in out
    if shutil.which("promtool"):
        assert "promtool check metrics: OK" in out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_demo_shuts_down_gracefully_on_a_signal(signum: signal.Signals) -> None:
    with subprocess.Popen(
        [sys.executable, str(DEMO)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    ) as demo:
        assert demo.stdout is not None
        first = demo.stdout.readline()
        assert "Ctrl-C stops gracefully" in first
        demo.send_signal(signum)
        out, err = demo.communicate(timeout=60)
    assert demo.returncode == 128 + signum, first + out + err
    assert f"{signum.name}: shutting down (grace period 2 s" in out
    accepted = int(row(out, "accepted jobs"))
    finished = sum(
        int(row(out, label))
        for label in (
            "succeeded: page ok",
            "succeeded: dead link (4xx)",
            "failed (5xx)",
            "timed out (hanging page)",
            "cancelled",
        )
    )
    assert finished == accepted  # every accepted job ended, none was lost
    assert accepted < 400  # it stopped submitting
    assert "WARNING" not in err
