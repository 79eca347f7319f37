"""Sphinx configuration for trio_pool."""

from __future__ import annotations

import os

project = "trio_pool"
author = "trio_pool developers"
copyright = "2026, trio_pool developers"  # noqa: A001
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinxcontrib_trio",
]
# Inventories need the network; set TRIO_POOL_DOCS_OFFLINE=1 where there is none.
intersphinx_mapping = (
    {}
    if os.environ.get("TRIO_POOL_DOCS_OFFLINE")
    else {
        "python": ("https://docs.python.org/3", None),
        "trio": ("https://trio.readthedocs.io/en/stable", None),
        "outcome": ("https://outcome.readthedocs.io/en/latest", None),
        "trio_parallel": ("https://trio-parallel.readthedocs.io/en/latest", None),
    }
)
default_role = "py:obj"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Users never construct the classes: no constructor parameters in the reference.
autodoc_class_signature = "separated"
napoleon_google_docstring = True
nitpicky = True
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(trio|trio_parallel|outcome|opentelemetry|typing_extensions|PosArgT|T)"
        r"(\..*)?",
    ),
    (
        r"py:.*",
        r"(Exception|ExceptionGroup|TypeError|ValueError|Any|Awaitable|Callable)",
    ),
    (
        r"py:.*",
        r"(AbstractAsyncContextManager|Unpack|functools\.partial|PoolCore|JobOwner"
        r"|GroupBlock|MapRequest)",
    ),
    (
        r"py:.*",
        r"(TracerProvider|MeterProvider|U|R|trio_pool\._\w+\.(T|U|R|PoolCore))",
    ),
    (r"py:.*", r"(concurrent\.futures\..*|Iterable|AsyncIterable|Self)"),
    (r"py:.*", r"(coredis(\..*)?|Mapping|Delivery|trio_pool\.Pool|.*ConsumerCore)"),
]
html_theme = "alabaster"
exclude_patterns = ["_build"]


def _source_modules_for_attribute_docs() -> None:
    """Point autodoc at the modules that define the attrs classes.

    ``trio_pool/__init__.py`` sets each public class's ``__module__`` to
    ``trio_pool`` (for readable tracebacks), but autodoc reads attribute
    docstrings from the source of ``__module__``: without this, the fields
    of `PoolStatistics` and of the stream consumer's records show bare.
    """
    import trio_pool
    import trio_pool.redis

    for package in (trio_pool, trio_pool.redis):
        for name in package.__all__:
            obj = getattr(package, name)
            defined_in = getattr(getattr(obj, "__init__", None), "__module__", None)
            if isinstance(obj, type) and defined_in and defined_in != obj.__module__:
                obj.__module__ = defined_in


_source_modules_for_attribute_docs()
