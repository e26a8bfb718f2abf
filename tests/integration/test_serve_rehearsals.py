"""docs/operations.md's rehearsals, command by command, against `make serve` started through make with the settings
the page names: a switch of token mode seen within a second, and a caller's spent budget."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator

import pytest

from tests.documents import documents

from .operator_commands import (
    CALLER_BUDGET_FLOW,
    CALLER_BUDGET_SERVE,
    LOCAL_CALLER,
    MODE_SWITCH_FLOW,
    MODE_SWITCH_SERVE,
    render,
)
from .test_serve import Served, run

FREE_PORTS = ["GATEWAY_PORT=0", "MOTO_PORT=0", "TOKEN_STUB_PORT=0"]


def make_serve(documented: str) -> Served:
    """`make serve` with the documented settings, on free ports."""
    return Served(["make", "--no-print-directory", *shlex.split(documented)[1:], *FREE_PORTS])


@pytest.fixture
def mode_switch() -> Iterator[Served]:
    served = make_serve(MODE_SWITCH_SERVE)
    yield served
    served.stop()


@pytest.fixture
def caller_budget() -> Iterator[Served]:
    served = make_serve(CALLER_BUDGET_SERVE)
    yield served
    served.stop()


def test_the_page_shows_the_rehearsals_as_the_tests_run_them() -> None:
    page = documents()["docs/operations.md"]

    for command in [MODE_SWITCH_SERVE, CALLER_BUDGET_SERVE, *MODE_SWITCH_FLOW, *CALLER_BUDGET_FLOW]:
        assert command in page, command


def test_make_serve_prints_the_settings_it_was_given(mode_switch: Served) -> None:
    assert "  function settings: SECRET_CACHE_SECONDS=1 (default 300)" in mode_switch.printed


def test_a_setting_that_is_no_number_stops_make_serve_naming_it() -> None:
    result = run("make serve MAX_MINTS_PER_CALLER_PER_HOUR=two GATEWAY_PORT=0 MOTO_PORT=0 TOKEN_STUB_PORT=0")

    assert result.returncode != 0
    assert result.stderr.startswith("make serve: MAX_MINTS_PER_CALLER_PER_HOUR=two: "), result.stderr
    assert "Local vending API" not in result.stdout


def test_rehearsing_a_mode_switch(mode_switch: Served) -> None:
    outputs = []
    for command in MODE_SWITCH_FLOW:
        result = run(render(command, mode_switch.gateway_url))
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        outputs.append(result.stdout)

    _, before, switched, _, after, tokens = outputs
    assert "same credentials, token mode per_caller -> shared" in switched
    first, second = (re.search(r"fingerprint (\w+)", text)[1] for text in (before, after))  # type: ignore[index]
    assert first != second  # within a second, the vend gets the app's shared token
    rows = sorted((line.split()[4], line.split()[6], line.split()[-1]) for line in tokens.splitlines()[1:])
    assert rows == [("(shared)", second, "yes"), (LOCAL_CALLER, first, "no:now_shared")]


def test_rehearsing_a_spent_caller_budget(caller_budget: Served) -> None:
    results = [run(render(command, caller_budget.gateway_url)) for command in CALLER_BUDGET_FLOW]

    first, second, third, tokens = results
    assert [result.returncode for result in (first, second, tokens)] == [0, 0, 0]
    assert "OK: a bearer token for demo, scope 'cx.agent-calls'" in first.stdout
    assert third.returncode != 0
    assert ("FAIL: HTTP 429 mint_limit_reached: this caller's requests have fetched as many tokens as allowed this "
            "hour") in third.stdout
    assert re.search(r"^      Retry-After: \d+ s$", third.stdout, re.MULTILINE)
    assert sorted(line.split()[5] for line in tokens.stdout.splitlines()[1:]) == ["cx.agent-calls", "cx.queue-calls"]
