"""Issue 17, adversary: bad arguments are refused at once, named with their value."""

from __future__ import annotations

import re
from typing import Any

import pytest
from opentelemetry import trace

import trio_pool


@pytest.mark.parametrize(
    ("argument", "value", "method"),
    [
        ("tracer_provider", 5, "get_tracer"),
        ("tracer_provider", trace.get_tracer("x"), "get_tracer"),  # a tracer
        ("meter_provider", "console", "get_meter"),
        ("meter_provider", trace.get_tracer_provider(), "get_meter"),
    ],
)
def test_a_provider_that_is_no_provider_is_a_bad_argument(
    argument: str, value: Any, method: str
) -> None:
    """Before: accepted, then logged at WARNING as a provider that raised,
    and the pool ran without that telemetry."""
    message = re.escape(
        f"{argument} must be an OpenTelemetry provider (with {method}())"
    )
    with pytest.raises(
        TypeError, match=f"{message} or None, not {re.escape(repr(value))}"
    ):
        trio_pool.open_pool(1, **{argument: value})
    with pytest.raises(TypeError, match=message):
        trio_pool.open_pool(1, telemetry=False, **{argument: value})


def test_an_empty_pool_name_is_a_bad_argument() -> None:
    """Before: ``name=""`` silently became ``pool-N``."""
    with pytest.raises(ValueError, match=re.escape("name='' is empty")):
        trio_pool.open_pool(1, name="")
