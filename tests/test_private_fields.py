"""Fields are private to their owner: the structural check of ``src/``.

pyright's ``reportPrivateUsage`` checks every module of ``src/`` except
those that keep the job record's books: one object per job is both the
public `Job` handle and the core's record of the job, its fields private to
users (a leading underscore) yet read and written by the core's modules,
which therefore turn the check off at their top. This test checks what
pyright cannot there: outside ``self``, ``cls`` and ``super()``, the only
private attributes any module of ``src/`` reads or writes are the job
record's (`Job`'s private slots and methods, read from the class itself).
It also checks that each module that turns pyright's check off needs to
(it touches the job record) and says why.

A name can only tell so much: an attribute named as one of the job record's
(``_core``, ``_lot``...) passes here whatever object has it, so in the
modules that opt out, another object's field of the same name would pass;
everywhere else pyright sees the types.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from trio_pool import Job
from trio_pool._job import FeaturedJob

SRC = Path(__file__).resolve().parent.parent / "src"
MODULES = sorted(SRC.rglob("*.py"))
OPT_OUT = "# pyright: reportPrivateUsage=false"
OPTING_OUT = [path for path in MODULES if OPT_OUT in path.read_text().splitlines()]


def is_private(name: str) -> bool:
    """Whether ``name`` is private (a leading underscore, and no dunder)."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def job_record_members() -> frozenset[str]:
    """The job record's private fields (the slots of `Job` and of
    `FeaturedJob`, the record of a pool with features) and methods."""
    members: set[str] = set()
    for record in (Job, FeaturedJob):
        members |= {name for name in record.__slots__ if is_private(name)}
        members |= {
            name
            for name, member in vars(record).items()
            if is_private(name)
            and (inspect.isfunction(member) or isinstance(member, property))
        }
    return frozenset(members)


def is_own(receiver: ast.expr) -> bool:
    """Whether ``receiver`` is the object itself: ``self``, ``cls`` or ``super()``."""
    if isinstance(receiver, ast.Name):
        return receiver.id in {"self", "cls"}
    return (
        isinstance(receiver, ast.Call)
        and isinstance(receiver.func, ast.Name)
        and receiver.func.id == "super"
    )


def private_accesses(source: str) -> list[ast.Attribute]:
    """Every private attribute of an object other than itself, read or written."""
    return [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and is_private(node.attr)
        and not is_own(node.value)
    ]


def describe(path: Path, node: ast.Attribute) -> str:
    """``module:line: receiver._name``, for a failure message."""
    where = path.relative_to(SRC)
    return f"{where}:{node.lineno}: {ast.unparse(node)}"


def test_the_job_record_is_read_from_the_class() -> None:
    members = job_record_members()
    assert {"_holder", "_key", "_failure", "_error", "_outcome", "_listen"} <= members
    assert "state" not in members  # public: the handle's
    assert not {"__weakref__", "__init__", "__repr__"} & members


def test_the_check_finds_pokes_and_passes_the_job_record() -> None:
    source = (
        "def f(self, core, job):\n"
        "    self._own = core._queue\n"  # a poke: core's field
        "    core._become(None)\n"  # a poke: core's method
        "    job._holder = None\n"  # the job record
        "    super()._x\n"
        "    return job._outcome(), cls._y, type(job).__name__\n"
    )
    members = job_record_members()
    found = [node.attr for node in private_accesses(source) if node.attr not in members]
    assert sorted(found) == ["_become", "_queue"]


def test_only_the_job_record_is_reached_into() -> None:
    """Outside ``self``, a module of ``src/`` touches no private field or
    method but the job record's."""
    members = job_record_members()
    pokes = [
        describe(path, node)
        for path in MODULES
        for node in private_accesses(path.read_text())
        if node.attr not in members
    ]
    assert not pokes, (
        f"{len(pokes)} private fields or methods of another object "
        "(give their owner a method or a read-only property, or have it pass "
        "what is needed):\n" + "\n".join(sorted(pokes))
    )


@pytest.mark.parametrize(
    "path", OPTING_OUT, ids=lambda path: str(path.relative_to(SRC))
)
def test_opting_out_of_pyright_is_for_the_job_record(path: Path) -> None:
    """A module turns ``reportPrivateUsage`` off only if it touches the job
    record, and says so on the line above."""
    lines = path.read_text().splitlines()
    members = job_record_members()
    touched = {
        node.attr for node in private_accesses(path.read_text()) if node.attr in members
    }
    assert touched, f"{path.name} touches no job record field: remove {OPT_OUT!r}"
    reason = lines[lines.index(OPT_OUT) - 1]
    assert reason.startswith("#"), f"{path.name}: say why above {OPT_OUT!r}"
    assert "job record" in reason.lower(), f"{path.name}: name the job record"
