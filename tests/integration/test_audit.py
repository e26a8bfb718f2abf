"""Every answer of the token routes leaves one audit record (refusals too), and nothing secret reaches the
logs, not even with every logger at DEBUG."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import CALLER_ROLE, CALLER_SESSION, SCOPES, Lambda

STRANGER = "arn:aws:sts::111122223333:assumed-role/other-service/s"


def audit_records(logs: str) -> list[dict[str, Any]]:
    lines = (json.loads(text) for text in logs.splitlines() if text.startswith("{"))
    return [line for line in lines if "audit" in line]


@pytest.mark.parametrize(("kwargs", "status", "outcome"), [
    ({}, 200, "ok"),
    ({"caller": STRANGER}, 403, "access_denied"),
    ({"caller": None}, 403, "access_denied"),
    ({"scope": "cx.agent-calls cx.admin"}, 403, "invalid_scope"),
    ({"app": "ghost"}, 404, "unknown_app"),
    ({"app": "bad.app"}, 400, "invalid_request"),
    ({"scope": None}, 400, "invalid_request"),
])
def test_every_vend_answer_writes_one_audit_record(lam: Lambda, captured_logs: Any, kwargs: dict[str, Any],
                                                   status: int, outcome: str) -> None:
    answer = lam.vend(**kwargs)

    assert answer.status == status
    [record] = audit_records(captured_logs())
    assert record["audit"] == "vend"
    assert record["outcome"] == outcome
    assert record["status"] == status
    assert record["caller"] == kwargs.get("caller", CALLER_SESSION)
    assert record["app"] == kwargs.get("app", "demo")
    assert record["scope"] == (kwargs.get("scope", SCOPES) or "")
    assert record["correlation_id"]  # the API Gateway request id, to find the access log line
    if status == 200:
        assert answer.body
        assert record["fingerprint"] == answer.body["fingerprint"]
        assert record["source"] == "upstream"
        assert answer.body["access_token"] not in json.dumps(record)
    else:
        assert "fingerprint" not in record


def test_a_refused_report_and_an_accepted_one_are_audited_with_the_fingerprint(lam: Lambda, settings_env: Any,
                                                                              captured_logs: Any) -> None:
    settings_env(MIN_REPORT_AGE_SECONDS=60)
    vended = lam.vend().body
    assert vended
    captured_logs()

    too_soon = lam.report(vended["fingerprint"])
    stranger = lam.report(vended["fingerprint"], caller=STRANGER)
    settings_env(MIN_REPORT_AGE_SECONDS=0)
    accepted = lam.report(vended["fingerprint"])

    assert [too_soon.status, stranger.status, accepted.status] == [429, 403, 204]
    records = audit_records(captured_logs())
    assert [(r["audit"], r["outcome"], r["status"], r["caller"]) for r in records] == [
        ("report", "slow_down", 429, CALLER_SESSION),
        ("report", "access_denied", 403, STRANGER),
        ("report", "ok", 204, CALLER_SESSION),
    ]
    assert {r["fingerprint"] for r in records} == {vended["fingerprint"]}
    assert all(r["app"] == "demo" and r["scope"] == SCOPES for r in records)


def test_what_a_caller_sent_is_audited_as_sent_and_bounded(lam: Lambda, captured_logs: Any) -> None:
    answer = lam.vend(scope='cx."quoted" ' + "x" * 1000)

    assert answer.status == 400
    [record] = audit_records(captured_logs())
    assert record["scope"].startswith('cx."quoted" x')
    assert len(record["scope"]) == 256


def test_a_scheduled_run_audits_its_mint_as_the_schedule_not_as_a_vend(lam: Lambda, captured_logs: Any) -> None:
    lam.invoke({"prewarm": [{"app": "demo", "scope": SCOPES, "caller": CALLER_ROLE}]})

    [record] = audit_records(captured_logs())
    assert (record["audit"], record["caller"], record["charged_to"], record["outcome"]) == (
        "schedule", "schedule", "schedule", "ok")


@pytest.fixture
def everything_at_debug(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The root logger at DEBUG (what Lambda does for the DEBUG application log level) with a handler that
    keeps every record of every library, and Powertools at DEBUG too."""
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("AWS_LAMBDA_LOG_LEVEL", "DEBUG")
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(f"{record.name} {record.getMessage()} {record.args!r} {record.__dict__!r}")

    root = logging.getLogger()
    handler, level = Keep(level=logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    from token_vending.observability import logger

    logger.setLevel("DEBUG")
    yield records
    logger.setLevel("INFO")
    root.removeHandler(handler)
    root.setLevel(level)


def test_at_debug_no_secret_token_or_basic_header_reaches_any_log(lam: Lambda, everything_at_debug: list[str],
                                                                  captured_logs: Any, settings_env: Any) -> None:
    settings_env(MEMORY_TRUST_SECONDS=0)
    secret = lam.stack.token_endpoint.clients["demo-client"]
    first = lam.vend().body
    lam.vend()  # memory, re-checked against the table
    lam.new_container()
    second = lam.vend().body  # table hit: KMS Decrypt
    lam.invoke({"prewarm": [{"app": "demo", "scope": "cx.agent-calls"}]})  # GetSecretValue, Encrypt
    assert first and second

    everything = "\n".join(everything_at_debug) + captured_logs()

    assert len(everything_at_debug) > 10  # DEBUG really was on: libraries and Powertools logged
    for leak in (secret, first["access_token"], "Basic ", "Authorization"):
        assert leak not in everything, leak


def test_a_client_secret_basic_auth_cannot_carry_is_a_500_whose_log_names_no_part_of_it(
        lam: Lambda, captured_logs: Any) -> None:
    secret = "p\u00e4ss-\u20ac-w\u00f6rd-\u4e2d"  # outside Latin-1 from its third character on
    lam.stack.add_app("unicode", allowed_callers=["111122223333"], client_secret=secret)

    answer = lam.vend(app="unicode")

    assert (answer.status, answer.error) == (500, "internal_error")
    assert answer.body == {"error": "internal_error", "error_description": "internal error"}
    logs = captured_logs()
    [line] = [json.loads(text) for text in logs.splitlines() if "misconfigured" in text]
    assert line["problem"] == "client_secret cannot be sent with Basic auth"
    assert "Traceback" not in logs
    for part in ("\u20ac", "\u4e2d", "w\u00f6rd", "p\u00e4ss", "\\u20ac", "\\u4e2d"):
        assert part not in logs
    assert lam.stack.token_endpoint.request_count == 0
