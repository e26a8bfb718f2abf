"""Budgets no caller can dodge or shift, and a function that fails closed when misconfigured: each as a
determined caller or an operator with a slip in the configuration would try it, against the real handler,
the moto server and the stub token endpoint."""

from __future__ import annotations

import json
from typing import Any

import pytest
from token_vending.settings import InvalidSettings

from .conftest import CALLER_SESSION, Lambda
from .test_per_caller import ACCOUNT, OTHER_ROLE, OTHER_SESSION, audit_records, share_tokens, token_of

FEDERATED = f"arn:aws:sts::{ACCOUNT}:federated-user/"


@pytest.fixture
def account_app(lam: Lambda) -> Lambda:
    """App `demo` admitting the whole account: its roles, users and federated users."""
    lam.stack.add_app("demo", allowed_callers=[ACCOUNT], client_id="demo-client",
                      client_secret=lam.stack.token_endpoint.clients["demo-client"])
    return lam


@pytest.mark.usefixtures("budget_hour")
def test_federated_users_of_one_account_share_one_caller_budget(account_app: Lambda, settings_env: Any) -> None:
    lam = account_app
    settings_env(MAX_MINTS_PER_CALLER_PER_HOUR=2)

    answers = [lam.vend(caller=FEDERATED + f"name-{n}") for n in range(8)]
    role = lam.vend(caller=OTHER_SESSION)

    assert [answer.status for answer in answers] == [200, 200] + [429] * 6
    assert {answer.error for answer in answers[2:]} == {"mint_limit_reached"}
    assert token_of(answers[0]) != token_of(answers[1])  # their tokens stay per name
    assert role.status == 200  # a role of the same account still mints
    assert lam.stack.token_endpoint.request_count == 3


@pytest.mark.usefixtures("budget_hour")
def test_a_federated_name_is_served_its_own_token_again_without_spending(account_app: Lambda,
                                                                        settings_env: Any) -> None:
    lam = account_app
    settings_env(MAX_MINTS_PER_CALLER_PER_HOUR=1)
    first = token_of(lam.vend(caller=FEDERATED + "alice"))

    again = lam.vend(caller=FEDERATED + "alice")
    other = lam.vend(caller=FEDERATED + "bob")

    assert token_of(again) == first
    assert (other.status, other.error) == (429, "mint_limit_reached")


@pytest.fixture
def shared_app(lam: Lambda) -> Lambda:
    lam.stack.add_app("demo", allowed_callers=["arn:aws:iam::111122223333:role/billing-service", OTHER_ROLE],
                      client_id="demo-client", client_secret=lam.stack.token_endpoint.clients["demo-client"])
    share_tokens(lam.stack)
    return lam


@pytest.mark.usefixtures("budget_hour")
def test_in_a_shared_app_a_reporters_reports_never_make_another_callers_vend_429(shared_app: Lambda,
                                                                                  settings_env: Any) -> None:
    lam = shared_app
    settings_env(MAX_MINTS_PER_CALLER_PER_HOUR=3)
    answers = []
    for _ in range(5):
        token = lam.vend(caller=OTHER_SESSION)  # Y vends (and so mints after each drop)
        answers.append(token)
        lam.report(token.body["fingerprint"], caller=CALLER_SESSION)  # X reports the shared token

    assert [answer.status for answer in answers] == [200] * 5


@pytest.mark.usefixtures("budget_hour")
def test_a_report_spends_the_reporters_budget_and_past_it_drops_nothing(shared_app: Lambda,
                                                                         settings_env: Any) -> None:
    lam = shared_app
    settings_env(MAX_MINTS_PER_CALLER_PER_HOUR=2)
    reports = []
    for _ in range(3):
        vended = lam.vend(caller=OTHER_SESSION)
        reports.append((token_of(vended), lam.report(vended.body["fingerprint"], caller=CALLER_SESSION)))

    statuses = [report.status for _, report in reports]
    assert statuses == [204, 204, 429]
    refused = reports[-1][1]
    assert refused.error == "mint_limit_reached" and 0 < int(refused.headers["Retry-After"]) <= 3600
    # Nothing dropped: the token reported last is still served.
    assert token_of(lam.vend(caller=OTHER_SESSION)) == reports[-1][0]


@pytest.mark.usefixtures("budget_hour")
def test_the_mint_after_a_report_is_charged_to_the_reporter_not_the_next_caller(lam: Lambda, settings_env: Any,
                                                                                 captured_logs: Any) -> None:
    settings_env(MAX_MINTS_PER_CALLER_PER_HOUR=2)
    first = lam.vend()
    assert lam.report(first.body["fingerprint"]).status == 204  # per caller: its own token
    captured_logs()

    second = lam.vend()

    assert second.status == 200 and second.body["fingerprint"] != first.body["fingerprint"]
    [record] = audit_records(captured_logs())
    assert record["source"] == "upstream" and record.get("prepaid") is True


def test_a_container_without_its_table_answers_500_names_the_setting_and_calls_nothing(
        lam: Lambda, settings_env: Any, captured_logs: Any) -> None:
    settings_env(TOKEN_TABLE_NAME="")
    lam.stack.moto.calls.clear()

    answers = [lam.vend(), lam.vend()]

    assert [(answer.status, answer.error) for answer in answers] == [(500, "internal_error")] * 2
    assert lam.stack.token_endpoint.request_count == 0
    assert lam.stack.moto.calls == []
    logs = captured_logs()
    problems = [json.loads(line) for line in logs.splitlines()
                if line.startswith("{") and "TOKEN_TABLE_NAME" in line and '"level":"ERROR"' in line]
    assert len(problems) == 1  # logged once per container


def test_a_table_that_does_not_exist_is_a_500_before_any_upstream_request(lam: Lambda, settings_env: Any,
                                                                          captured_logs: Any) -> None:
    settings_env(TOKEN_TABLE_NAME="no-such-table")

    answer = lam.vend()

    assert (answer.status, answer.error) == (500, "internal_error")
    assert lam.stack.token_endpoint.request_count == 0
    assert "ResourceNotFoundException" in captured_logs()


def test_the_largest_request_accepted_seals_stores_and_is_served_from_the_table_in_another_container(
        lam: Lambda) -> None:
    app = "a" * 64
    scopes = [f"{n:02d}" + "s" * 254 for n in range(32)]  # 32 scopes of 256 characters
    caller = f"arn:aws:iam::{ACCOUNT}:user/" + "team/" * 100 + "u" * 64  # a user on a long path
    lam.stack.add_app(app, allowed_callers=[ACCOUNT], allowed_scopes=scopes)

    first = lam.vend(app=app, scope=" ".join(scopes), caller=caller)
    lam.new_container()
    second = lam.vend(app=app, scope=" ".join(scopes), caller=caller)

    assert token_of(first) == token_of(second)
    assert lam.stack.token_endpoint.request_count == 1


def test_a_scheduled_run_with_invalid_settings_fails_and_calls_nothing(lam: Lambda, settings_env: Any) -> None:
    settings_env(TOKEN_FETCH_DEADLINE_SECONDS=30)  # longer than the lease: two containers would fetch one token
    lam.stack.moto.calls.clear()

    with pytest.raises(InvalidSettings) as failed:  # the invocation fails: FunctionErrorsAlarm
        lam.invoke({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})

    assert any(problem.startswith("TOKEN_FETCH_DEADLINE_SECONDS must be less than LEASE_SECONDS")
               for problem in failed.value.problems)
    assert lam.stack.moto.calls == [] and lam.stack.token_endpoint.request_count == 0
