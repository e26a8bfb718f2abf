"""Who got which token: the Logs Insights queries' text, how --callers builds and runs its query, and how the
answer is printed. Logs Insights itself is not emulated: botocore's Stubber checks each request against the
CloudWatch Logs API model and plays back answers in its shape."""

from __future__ import annotations

import re

import boto3
import pytest
from botocore.stub import Stubber

from tests.documents import documents
from tools import audit_queries
from tools.audit_queries import QUERIES, callers_queries, callers_query, format_callers, parse_since, run_query

FP_A, FP_B, FP_C = "298c9c3441157b59", "0123456789abcdef", "fedcba9876543210"
SESSION = "arn:aws:sts::111122223333:assumed-role/billing-service/task-1"
USER = "arn:aws:iam::111122223333:user/ops"


def test_the_saved_queries_exist_under_the_names_the_template_uses() -> None:
    assert set(QUERIES) == {"VendsByHolderAndApp", "RefusalsByCallerAndReason", "FingerprintHistory",
                            "MintsByHolderAndApp", "BudgetRefusals", "MintLimitWarnings", "UpstreamFailures"}


def test_each_query_reads_the_audit_fields_the_function_writes() -> None:
    assert QUERIES["VendsByHolderAndApp"].startswith('filter audit = "vend" and outcome = "ok"')
    # A token belongs to a holder: vends are counted per holder, and how many callers (sessions) it has
    assert QUERIES["VendsByHolderAndApp"].splitlines()[1].endswith("by holder, app")
    assert "count_distinct(caller) as callers" in QUERIES["VendsByHolderAndApp"]
    assert 'outcome != "ok"' in QUERIES["RefusalsByCallerAndReason"]
    assert 'coalesce(caller, "(no IAM identity)") as who' in QUERIES["RefusalsByCallerAndReason"]
    assert "by who, app, outcome, status" in QUERIES["RefusalsByCallerAndReason"]
    assert QUERIES["FingerprintHistory"].startswith('filter fingerprint = "FINGERPRINT"')
    assert "caller, holder, app" in QUERIES["FingerprintHistory"]  # who asked, and whose token it is
    assert QUERIES["UpstreamFailures"].startswith("filter ispresent(upstream_failure)")
    assert "by app, upstream_failure" in QUERIES["UpstreamFailures"]


def test_the_operations_guide_prints_each_saved_query_as_the_stack_saves_it() -> None:
    guide = documents()["docs/operations.md"]
    # "**Name**: what it shows." then, after a blank line, the query in a fenced block
    printed = dict(re.findall(r"^\*\*(\w+)\*\*: (?:(?!\n\n).)*\n\n```\n(.*?)\n```", guide, re.S | re.M))

    assert printed == QUERIES


def test_every_query_is_commands_joined_by_pipes_one_a_line() -> None:
    for name, query in QUERIES.items():
        lines = query.splitlines()
        assert lines[0].split()[0] in {"filter", "fields"}, name
        assert all(line.startswith("| ") for line in lines[1:]), name
        assert query.count('"') % 2 == 0, name


def test_fingerprint_history_fills_in_one_fingerprint() -> None:
    query = audit_queries.fingerprint_history_query(FP_A)

    assert query.splitlines()[0] == f'filter fingerprint = "{FP_A}"'


def test_the_callers_query_names_each_listed_fingerprint_and_groups_by_token_and_caller() -> None:
    query = callers_query([FP_A, FP_B])

    assert query.splitlines() == [
        f'filter audit = "vend" and outcome = "ok" and fingerprint in ["{FP_A}", "{FP_B}"]',
        "| stats count(*) as vends, min(@timestamp) as first_seen, max(@timestamp) as last_seen by fingerprint, caller",
        "| limit 10000",
    ]


@pytest.mark.parametrize("bad", ['0123456789abcde"', "0123456789ABCDEF", "short", '") or (1=1'])
def test_nothing_but_a_fingerprint_reaches_a_query(bad: str) -> None:
    with pytest.raises(ValueError, match="16 lowercase hex"):
        callers_query([FP_A, bad])


def test_many_tokens_are_asked_about_in_a_few_queries_not_one_each() -> None:
    fingerprints = [f"{n:016x}" for n in range(450)] + [f"{0:016x}"]  # one repeated

    queries = callers_queries(fingerprints)

    assert len(queries) == 3
    assert [len(re.findall(r'"[0-9a-f]{16}"', query)) for query in queries] == [200, 200, 50]
    assert max(len(query) for query in queries) < 10_000  # Logs Insights' limit on a query string


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("12h", 43_200), ("7d", 604_800), ("2w", 1_209_600)])
def test_since_takes_minutes_hours_days_weeks(text: str, seconds: int) -> None:
    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["7", "0d", "1y", "-1d", "d7"])
def test_since_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="30m, 12h, 7d, 2w"):
        parse_since(text)


def row(**fields: str) -> list[dict[str, str]]:
    return [{"field": name, "value": value} for name, value in fields.items()]


def test_run_query_starts_the_query_polls_until_complete_and_returns_rows() -> None:
    logs = boto3.client("logs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    query = callers_query([FP_A])
    sleeps: list[float] = []
    with Stubber(logs) as stub:
        stub.add_response("start_query", {"queryId": "q-1"}, {
            "logGroupName": "/stack/TokenVendingLogGroup", "startTime": 1_000, "endTime": 605_800,
            "queryString": query, "limit": 10_000})
        stub.add_response("get_query_results", {"status": "Running", "results": []}, {"queryId": "q-1"})
        stub.add_response("get_query_results", {"status": "Complete", "results": [
            row(fingerprint=FP_A, caller=SESSION, vends="12", first_seen="2026-11-01 10:00:00.000",
                last_seen="2026-11-29 09:00:00.000", **{"@ptr": "opaque"}),
        ]}, {"queryId": "q-1"})

        rows = run_query(logs, "/stack/TokenVendingLogGroup", query, 1_000.7, 605_800.2, sleep=sleeps.append)

        stub.assert_no_pending_responses()
    assert rows == [{"fingerprint": FP_A, "caller": SESSION, "vends": "12", "first_seen": "2026-11-01 10:00:00.000",
                     "last_seen": "2026-11-29 09:00:00.000"}]
    assert sleeps == [1.0]


@pytest.mark.parametrize("status", ["Failed", "Cancelled", "Timeout"])
def test_a_query_that_ends_badly_is_reported(status: str) -> None:
    logs = boto3.client("logs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(logs) as stub:
        stub.add_response("start_query", {"queryId": "q-2"})
        stub.add_response("get_query_results", {"status": status, "results": []})

        with pytest.raises(audit_queries.QueryFailed, match=f"ended with status {status}"):
            run_query(logs, "group", callers_query([FP_A]), 0, 10, sleep=lambda _: None)


def test_a_query_that_never_finishes_is_stopped() -> None:
    logs = boto3.client("logs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(logs) as stub:
        stub.add_response("start_query", {"queryId": "q-3"})
        for _ in range(3):
            stub.add_response("get_query_results", {"status": "Running", "results": []})
        stub.add_response("stop_query", {"success": True}, {"queryId": "q-3"})

        with pytest.raises(audit_queries.QueryFailed, match="did not finish"):
            run_query(logs, "group", callers_query([FP_A]), 0, 10, sleep=lambda _: None, max_polls=3)
        stub.assert_no_pending_responses()


def test_callers_are_printed_per_token_most_vends_first_and_silent_tokens_say_so() -> None:
    rows = [
        {"fingerprint": FP_A, "caller": USER, "vends": "2", "first_seen": "2026-11-20 08:00:00.000",
         "last_seen": "2026-11-21 08:00:00.000"},
        {"fingerprint": FP_A, "caller": SESSION, "vends": "12", "first_seen": "2026-11-01 10:00:00.000",
         "last_seen": "2026-11-29 09:00:00.000"},
        {"fingerprint": FP_C, "caller": SESSION, "vends": "1", "first_seen": "2026-11-28 10:00:00.000",
         "last_seen": "2026-11-28 10:00:00.000"},
    ]

    lines = format_callers([FP_A, FP_B, FP_C], rows, "7d")

    assert lines[0] == "Callers that received each token in the last 7d (audit log):"
    assert [line.split()[:3] for line in lines[1:]] == [
        ["FINGERPRINT", "CALLER", "VENDS"],
        [FP_A, SESSION, "12"],
        [FP_A, USER, "2"],
        [FP_B, "(no", "vend"],
        [FP_C, SESSION, "1"],
    ]
    assert lines[4].split(None, 1)[1] == "(no vend in the last 7d)"
    assert lines[2].endswith("2026-11-01 10:00:00.000  2026-11-29 09:00:00.000")
