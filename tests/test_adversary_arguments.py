"""Issue 17, adversary: bad arguments are refused at once, named with their value."""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio
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


async def test_a_refused_pool_takes_no_number() -> None:
    """Found by a newcomer: refused ``open_pool`` calls used up ``pool-N``
    names, so the first pool of a program could be ``pool-3``."""
    async with trio_pool.open_pool(1) as pool:
        number = int(pool.name.removeprefix("pool-"))
    bad_arguments: list[dict[str, Any]] = [
        {"capacity": -1},
        {"rate": -1.0},
        {"meter_provider": 5},
    ]
    for bad in bad_arguments:
        with pytest.raises((TypeError, ValueError)):
            trio_pool.open_pool(1, **bad)
    async with trio_pool.open_pool(1) as pool:
        assert pool.name == f"pool-{number + 1}"


def test_as_completed_of_no_iterable_names_its_argument() -> None:
    """Found by a newcomer: ``as_completed(5)`` said only that an int is not
    iterable."""
    with pytest.raises(
        TypeError, match=re.escape("iterable of Job handles, not jobs=5")
    ):
        trio_pool.as_completed(5)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def test_the_overload_message_of_a_one_worker_pool_reads_right() -> None:
    """Found by a newcomer: it said "all 1 workers busy"."""
    async with trio_pool.open_pool(1, capacity=0) as pool:
        pool.submit_nowait(trio.sleep_forever)
        with pytest.raises(trio_pool.PoolOverloaded, match="its one worker busy and 0"):
            pool.submit_nowait(trio.sleep_forever)
        pool.close()
        await pool.shutdown(grace_period=0)
