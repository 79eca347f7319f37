"""The demo, end to end: as the README's first command runs it, and interrupted.

The demo runs on the real clock against a real local site, so these tests
assert only what holds however busy the machine is: every accepted job ends
exactly once, the counts agree wherever they are shown, each page ends as
what it answered unless it ran past the time limit (a hanging page always
does), and a signal stops the demo gracefully.
"""

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
from typing import IO

import pytest
from demo import FULL, OUTCOMES, REFUSED, SHORT, RunSize, links

ROOT = Path(__file__).parents[1]
DEMO = ROOT / "examples" / "demo.py"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
HEADER = "Ctrl-C stops gracefully"
PROGRESS = " jobs ended: "  # in the line printed every second without a terminal


def demo_links(size: RunSize) -> tuple[list[str], list[str]]:
    """The kinds of the crawl's and the burst's links, as the demo draws them."""
    rng = random.Random(42)  # the demo's default seed
    crawl = [url.split("/")[1] for url in links("", size.crawl, rng)]
    burst = [url.split("/")[1] for url in links("", size.burst, rng)]
    return crawl, burst


def row(output: str, label: str) -> str:
    """The value in the summary table's row ``label``."""
    match = re.search(rf"│ +{re.escape(label)} +│ +(.+?) │", output)
    assert match is not None, f"no row {label!r} in:\n{output}"
    return match.group(1)


def outcomes(output: str) -> dict[str, int]:
    """How the accepted jobs ended and the refusals, from the summary table."""
    return {label: int(row(output, label)) for label in (*OUTCOMES, REFUSED)}


def final_live_line(output: str) -> dict[str, int]:
    """The same counts, from the last line of the live view."""
    line = output[output.rindex("\ndone ") :].split("\n")[1]
    return {
        label: int(re.search(rf"{re.escape(label)} (\d+)", line)[1])  # type: ignore[index]
        for label in (*OUTCOMES, REFUSED)
    }


def metric(output: str, name: str, outcome: str = "") -> int:
    """A count in the Prometheus scrape the demo prints (0 when absent)."""
    label = f'trio_pool_job_outcome="{outcome}"' if outcome else ""
    pattern = rf"^trio_pool_{name}\{{[^}}]*{label}[^}}]*\}} (\d+)\.0$"
    found = re.search(pattern, output, re.MULTILINE)
    return int(found[1]) if found else 0


def assert_every_job_counted_once(output: str) -> dict[str, int]:
    """The outcomes add up to the accepted jobs, in the table and the live view."""
    counts = outcomes(output)
    accepted = int(row(output, "accepted jobs"))
    assert sum(counts[label] for label in OUTCOMES) == accepted  # none lost
    assert final_live_line(output) == counts  # the live view says the same
    assert metric(output, "submitted_jobs_total") == accepted
    return counts


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
    assert "Traceback" not in out + done.stderr
    counts = assert_every_job_counted_once(out)
    # Every link was either accepted or refused at once; the burst's head was
    # accepted (no job can end while a handler submits: it never waits).
    crawl, burst = demo_links(SHORT)
    accepted = int(row(out, "accepted jobs"))
    assert accepted + counts[REFUSED] == len(crawl) + len(burst)
    assert len(crawl) < accepted < len(crawl) + len(burst)
    kinds = Counter(crawl + burst[: accepted - len(crawl)])
    # A page that answers ends as what it answered, unless a busy machine made
    # it run past the time limit (3 s; it answers in milliseconds, but with both
    # cores busy elsewhere a few took over 3 s): then it timed out. A hanging
    # page always times out. Nothing else happens to a page.
    assert counts["page ok"] <= kinds["fast"] + kinds["slow"]
    assert counts["dead link (4xx)"] <= kinds["missing"]
    assert counts["failed (5xx)"] <= kinds["fail"]
    assert counts["timed out"] >= kinds["hang"] > 0
    assert counts["cancelled"] == 0
    # The pool's own metrics count the same.
    by_the_pool = {
        "succeeded": counts["page ok"] + counts["dead link (4xx)"],
        "failed": counts["failed (5xx)"],
        "timed_out": counts["timed out"],
    }
    for outcome, count in by_the_pool.items():
        assert metric(out, "job_duration_seconds_count", outcome) == count, outcome
    assert metric(out, "rejected_jobs_total") == counts[REFUSED]
    # The pool grew at once for the burst and shrank back to its minimum.
    assert row(out, "workers (min / max seen)") == "4 / 32"
    # A trace: the crawl's span has every crawl job's span as a child.
    assert f"check links  ({len(crawl)} job spans are its children)" in out
    assert "timed out, span status error: timeout" in out
    assert "trio_pool_job_duration_seconds_bucket{" in out
    if shutil.which("promtool"):
        assert "promtool check metrics: OK" in out


def assert_stopped_gracefully(output: str, signum: signal.Signals) -> None:
    """The demo shut down on ``signum``: every job ended, the summary is right."""
    assert f"{signum.name}: shutting down (grace period 2 s" in output
    assert "again: cancelling every job" not in output  # one signal was enough
    counts = assert_every_job_counted_once(output)
    crawl, burst = demo_links(FULL)
    accepted = int(row(output, "accepted jobs"))
    assert accepted + counts[REFUSED] < len(crawl) + len(burst)  # it stopped
    assert row(output, "workers (min / max seen)").startswith("4 / ")
    assert "Traceback" not in output


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
        before = wait_for_work(demo.stdout)
        demo.send_signal(signum)
        out, err = demo.communicate(timeout=60)
    assert demo.returncode == 128 + signum, before + out + err
    assert_stopped_gracefully(out + err, signum)
    assert "WARNING" not in err


def wait_for_work(stdout: IO[str]) -> str:
    """Read the demo's output until its first progress line: it is working."""
    lines: list[str] = []
    for line in stdout:
        lines.append(line)
        if PROGRESS in line:
            output = "".join(lines)
            assert HEADER in output
            return output
    pytest.fail("the demo ended before its first progress line:\n" + "".join(lines))


def heed_ctrl_c() -> None:
    """In the child: SIGINT does what it does in a terminal.

    A command started in the background by a shell without job control (as
    a CI script may run the suite) inherits SIGINT ignored, and Python then
    installs no KeyboardInterrupt handler: nox would not hear the Ctrl-C.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_under_nox_stops_gracefully(tmp_path: Path) -> None:
    """``python3 -m nox -s demo``, then Ctrl-C: the terminal signals the group.

    nox runs the demo session of the noxfile as the README's command does,
    with the Python running this test instead of a virtualenv of its own
    (building one would take minutes on a busy machine).
    """
    env = {
        **ENV,
        # `python` in the session is this test's interpreter; the noxfile
        # would put pyenv's Pythons ahead of it on PATH, so it finds none.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), ENV["PATH"]]),
        "PYENV_ROOT": str(tmp_path),
    }
    command = [sys.executable, "-m", "nox", "--no-venv", "--no-install", "-s", "demo"]
    with subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # a process group of its own, as in a terminal
        preexec_fn=heed_ctrl_c,
    ) as nox:
        assert nox.stdout is not None
        before = wait_for_work(nox.stdout)
        os.killpg(nox.pid, signal.SIGINT)  # Ctrl-C: nox and the demo get it
        out, _ = nox.communicate(timeout=60)
    out = before + out
    assert nox.returncode == 130, out  # nox's status for an interrupted session
    assert "Session demo interrupted." in out
    assert_stopped_gracefully(out, signal.SIGINT)
    assert "WARNING" not in out
