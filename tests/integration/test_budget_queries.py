"""The saved queries that answer "the budget is gone: who spent it?", held against the log lines a local
rehearsal writes (the real handler, the moto server, the stub endpoint): every field each query filters or
groups on is in those lines with the values it expects, and grouping them as the query does names the holder
that spent the budget. Logs Insights cannot run here: insights.py reads the few commands the queries use."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tools.audit_queries import QUERIES

from . import insights
from .conftest import CALLER_HOLDER, CALLER_SESSION, Lambda
from .test_per_caller import OTHER_HOLDER, OTHER_ROLE, OTHER_SESSION

BUDGET_QUERIES = ("MintsByHolderAndApp", "BudgetRefusals", "MintLimitWarnings")


def log_records(logs: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in logs.splitlines() if line.startswith("{")]


@pytest.fixture
def spent(lam: Lambda, budget_hour: Any, settings_env: Any, captured_logs: Any) -> list[dict[str, Any]]:
    """An hour in which billing spends its own budget (3) and, with support's mint, the app's (4)."""
    lam.stack.add_app("demo", allowed_callers=["arn:aws:iam::111122223333:role/billing-service", OTHER_ROLE],
                      allowed_scopes=["cx.a", "cx.b", "cx.c"])
    settings_env(MAX_MINTS_PER_APP_PER_HOUR=4, MAX_MINTS_PER_CALLER_PER_HOUR=3)
    captured_logs()
    for scope in ("cx.a", "cx.b", "cx.c"):
        assert lam.vend(caller=CALLER_SESSION, scope=scope).status == 200
    assert lam.vend(caller=CALLER_SESSION, scope="cx.a").status == 200  # cached: no mint
    refused_caller = lam.vend(caller=CALLER_SESSION, scope="cx.a cx.b")
    assert lam.vend(caller=OTHER_SESSION, scope="cx.a").status == 200  # the app's fourth and last
    refused_app = [lam.vend(caller=OTHER_SESSION, scope="cx.b") for _ in range(2)]
    assert refused_caller.error == "mint_limit_reached"
    assert [answer.error for answer in refused_app] == ["mint_limit_reached"] * 2
    return log_records(captured_logs())


@pytest.mark.parametrize("name", BUDGET_QUERIES)
def test_every_field_a_budget_query_reads_is_in_the_lines_it_finds(spent: list[dict[str, Any]], name: str) -> None:
    found = insights.run(QUERIES[name].splitlines()[0], spent)  # its filter alone

    assert found, f"{name} finds nothing in a rehearsal's log lines"
    for record in found:
        assert insights.fields_read(QUERIES[name]) <= set(record), record


def test_the_mints_query_names_the_holder_that_spent_the_apps_budget(spent: list[dict[str, Any]]) -> None:
    rows = insights.run(QUERIES["MintsByHolderAndApp"], spent)

    assert rows[0] == {"app": "demo", "charged_to": CALLER_HOLDER, "mints": 3}
    assert {"app": "demo", "charged_to": OTHER_HOLDER, "mints": 1} in rows
    assert sum(row["mints"] for row in rows) == 4  # the app's budget, whole


def test_the_refusals_query_says_which_budget_refused_and_whose(spent: list[dict[str, Any]]) -> None:
    rows = insights.run(QUERIES["BudgetRefusals"], spent)

    assert {"app": "demo", "budget": "caller", "budget_holder": CALLER_HOLDER, "refusals": 1} in rows
    assert {"app": "demo", "budget": "app", "budget_holder": "", "refusals": 2} in rows
    warnings = insights.run(QUERIES["MintLimitWarnings"], spent)
    assert {"app": "demo", "budget": "app", "holder": "", "limit": 4, "warnings": 1} in warnings


@pytest.mark.usefixtures("budget_hour")
def test_a_callers_spent_budget_names_the_caller_and_every_refusal_counts(lam: Lambda, settings_env: Any,
                                                                          captured_logs: Any) -> None:
    settings_env(MAX_MINTS_PER_CALLER_PER_HOUR=1)
    lam.vend(scope="cx.agent-calls")
    captured_logs()

    refusals = [lam.vend(scope="cx.queue-calls") for _ in range(2)]

    assert [answer.error for answer in refusals] == ["mint_limit_reached"] * 2
    records = log_records(captured_logs())
    assert insights.run(QUERIES["BudgetRefusals"], records) == [
        {"app": "demo", "budget": "caller", "budget_holder": CALLER_HOLDER, "refusals": 2}]
    assert sum(record.get("MintLimitReached", 0) for record in records) == 2  # each refusal, not only the first


def test_the_scheduled_runs_mints_are_counted_as_the_schedules(lam: Lambda, captured_logs: Any) -> None:
    captured_logs()
    lam.invoke({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {},
                "prewarm": [{"app": "demo", "scope": "cx.agent-calls", "caller": CALLER_SESSION}]})

    rows = insights.run(QUERIES["MintsByHolderAndApp"], log_records(captured_logs()))

    assert rows == [{"app": "demo", "charged_to": "schedule", "mints": 1}]
