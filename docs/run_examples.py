"""Run every Python example of README.md and docs/ as a reader would: copied alone.

Each ``python`` code block becomes a file of its own, run with this
interpreter (``python file.py``) in an empty folder, on the real clock, with
nothing added: no set-up, no shared namespace. The test suite runs the same
blocks with Sybil (``conftest.py``); this script checks that they also work
copied one by one. Two things a reader has too: ``examples/cpu_work.py`` sits
next to the CPU-bound how-to's blocks (the page says to import it from
there), and ``REDIS_URL`` names a redis-server (a throwaway one, started here)
for the Redis how-to.

Usage: ``python docs/run_examples.py [PATH_PART ...]`` (only the blocks whose
file path contains one of the parts), from the repository's root, with an
interpreter that has the test dependencies (``.nox/tests-3-12/bin/python``).
Prints one line per block and a summary; exits 1 if any block failed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sybil import Sybil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for conftest and tests.redis_server

from conftest import markdown_blocks, rest_blocks  # noqa: E402
from tests.redis_server import redis_server  # noqa: E402

TIMEOUT = 300.0
"""Seconds a block may take before it counts as failed."""


def code_blocks() -> list[tuple[Path, int, str]]:
    """Every Python block of README.md and docs/: (path, line, source)."""
    readme = Sybil(parsers=[markdown_blocks()])  # the blocks the test suite runs
    docs = Sybil(parsers=[rest_blocks()])
    paths = [(readme, ROOT / "README.md")]
    paths += [(docs, path) for path in sorted((ROOT / "docs").rglob("*.rst"))]
    return [
        (path, example.line, str(example.region.parsed))
        for sybil, path in paths
        for example in sybil.parse(path)
    ]


def run_block(
    folder: Path, path: Path, line: int, source: str, env: dict[str, str]
) -> tuple[bool, float, str]:
    """Run one block as ``python file.py`` in ``folder``: (passed, seconds, output)."""
    page = path.relative_to(ROOT).as_posix().replace("/", "_").replace(".", "_")
    script = folder / f"{page}_{line}.py"
    script.write_text(source)
    start = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, script.name],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, time.monotonic() - start, f"timed out after {TIMEOUT:.0f} s"
    seconds = time.monotonic() - start
    return done.returncode == 0, seconds, done.stdout + done.stderr


def main(parts: list[str]) -> int:
    """Run the blocks (those whose path contains one of ``parts``, if given)."""
    blocks = [
        block
        for block in code_blocks()
        if not parts or any(part in str(block[0]) for part in parts)
    ]
    failed = []
    total = 0.0
    with redis_server() as server, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(ROOT / "examples" / "cpu_work.py", folder)
        env = {**os.environ, "REDIS_URL": server.url}
        env.pop("PYTHONPATH", None)
        for path, line, source in blocks:
            passed, seconds, output = run_block(folder, path, line, source, env)
            total += seconds
            where = f"{path.relative_to(ROOT)}:{line}"
            print(
                f"{'ok  ' if passed else 'FAIL'} {seconds:6.2f} s  {where}", flush=True
            )
            if not passed:
                failed.append(where)
                print("    " + output.strip().replace("\n", "\n    "), flush=True)
    print(
        f"{len(blocks)} blocks run, {len(blocks) - len(failed)} passed, "
        f"{len(failed)} failed, {total:.1f} s in all"
    )
    for where in failed:
        print(f"failed: {where}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
