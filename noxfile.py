"""Sessions: tests (every Python 3.10-3.13 found), coverage (theirs combined), lint,
typing, docs; on demand: demo, bench, stress, under_load."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests", "coverage", "lint", "typing", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False


class _WithoutUvProbe(logging.Filter):
    """Drop nox's "uv binary not found." notice.

    Whatever the session's backend, nox asks ``uv`` for its version when it
    lists which optional backends exist, before it creates or reuses a
    virtualenv; without uv it logs this notice for every session. The project
    uses the ``virtualenv`` backend (nox's default) and never needs uv.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "uv binary not found."


logging.getLogger("nox").addFilter(_WithoutUvProbe())

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
SUPPORTED = nox.project.python_versions(PYPROJECT)


def _group(*names: str) -> list[str]:
    """The requirements of dependency groups (works with any pip version)."""
    return list(nox.project.dependency_groups(PYPROJECT, *names))


def _installed_pythons() -> list[str]:
    """The supported Pythons on this machine, pyenv's included.

    pyenv keeps each version under ``$(pyenv root)/versions``; their ``bin``
    folders go on PATH so that nox finds ``python3.X`` there (pyenv's shims
    answer for versions that are not active, and then fail).
    """
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    found: list[str] = []
    for version in SUPPORTED:
        builds = sorted(Path(root, "versions").glob(f"{version}.*/bin/python{version}"))
        if builds:
            bin_dir = str(builds[-1].parent)
            os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
            found.append(version)
        elif shutil.which(f"python{version}"):
            found.append(version)
    return found


PYTHONS = _installed_pythons()


DEBIAN_TOOLS = {"promtool": "prometheus", "redis-server": "redis-server"}
"""The programs the tests run, and the Debian package of each."""


def _ensure_debian_tools(session: nox.Session, *programs: str) -> None:
    """Install the Debian packages of whichever ``programs`` are missing.

    The tests need promtool (the exposition test) and redis-server (the Redis
    stream consumer's tests and benchmark start their own). The tests fail,
    never skip, without them.
    """
    missing = {p: DEBIAN_TOOLS[p] for p in programs if not shutil.which(p)}
    if not missing:
        return
    if not shutil.which("apt-get") or os.geteuid() != 0:
        session.error(
            "missing "
            + ", ".join(f"{p} (Debian's {pkg!r} package)" for p, pkg in missing.items())
            + ": install it as root"
        )
    session.run("apt-get", "update", "-qq", external=True)
    session.run(
        "apt-get",
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        *missing.values(),
        external=True,
        env={"DEBIAN_FRONTEND": "noninteractive"},
    )


COVERAGE_DATA = ".coverage"
"""The combined coverage data; each test session writes ``.coverage.<session>.*``."""

COVERAGE_FLOOR = 95
"""The least combined coverage (percent) that the ``coverage`` session accepts."""


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite (and every example in the docs) with coverage.

    The ``coverage`` session combines the data of every Python and checks it.
    """
    _ensure_debian_tools(session, *DEBIAN_TOOLS)
    session.install("-e", ".", *_group("tests"))
    data_file = f"{COVERAGE_DATA}.{session.name}"
    for stale in ROOT.glob(f"{data_file}.*"):  # an earlier run of this session
        stale.unlink()
    session.run(
        "coverage",
        "run",
        "-m",
        "pytest",
        *session.posargs,
        env={"COVERAGE_FILE": data_file},
    )


@nox.session
def coverage(session: nox.Session) -> None:
    """Combine the test sessions' coverage data, report it, and check the floor.

    Runs after them in ``nox``; alone, ``nox -s tests-3.12 coverage`` checks
    one Python's figure (which misses the other versions' branches).
    """
    session.install(*_group("coverage"))
    session.run("coverage", "combine")
    session.run("coverage", "report", f"--fail-under={COVERAGE_FLOOR}")


@nox.session
def stress(session: nox.Session) -> None:
    """The soak: 10⁶ jobs a seed, real clock (``nox -s stress -- --jobs 20000``)."""
    session.install("-e", ".", *_group("tests"))
    session.run("python", "tests/stress.py", *session.posargs)


@nox.session(python=False)
def under_load(session: nox.Session) -> None:
    """CI's command on a fresh clone of HEAD, 3 times, with both cores busy.

    ``nox -s under_load -- 1`` for one run; see ``.ci/under-load``.
    """
    session.run("bash", str(ROOT / ".ci" / "under-load"), *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*_group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy strict, pyright strict and pyright --verifytypes.

    Both checkers also read ``tests/static_types``: the types they infer for
    the public API (``assert_type``), and the calls that must stay errors.
    """
    session.install("-e", ".", *_group("typing"))
    session.run("mypy")
    session.run("pyright")
    session.run("pyright", "--verifytypes", "trio_pool", "--ignoreexternal")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the docs with warnings as errors (offline: no intersphinx), from
    scratch (``-E``): a cached page would hide its warnings, as on CI's clean
    clone they are not."""
    session.install("-e", ".", *_group("docs"))
    session.run(
        "sphinx-build",
        "-E",
        "-n",
        "-W",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
        env={"TRIO_POOL_DOCS_OFFLINE": "1"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: quick by default; ``nox -s bench -- --full`` for the matrix."""
    session.install("-e", ".", *_group("bench"))
    session.run("python", "benchmarks/run.py", *(session.posargs or ["--quick"]))
    session.run("python", "benchmarks/scaling.py")
    session.run("python", "benchmarks/queue_choice.py", "--quick")
    session.run("python", "benchmarks/features.py", "--quick")
    session.run("python", "benchmarks/cpu_bound.py", "--quick")
    _ensure_debian_tools(session, "redis-server")
    session.run("python", "benchmarks/redis_stream.py", "--quick")


@nox.session
def demo(session: nox.Session) -> None:
    """Run the demo: a link checker against a local website, through a scaling pool.

    On Ctrl-C nox waits for the demo's graceful stop (its grace period, then the
    summary) instead of sending SIGTERM after 0.3 s and SIGKILL 0.2 s later.
    """
    session.install("-e", ".", *_group("demo"))
    session.run(
        "python",
        "examples/demo.py",
        *session.posargs,
        interrupt_timeout=60.0,
        terminate_timeout=5.0,
    )
