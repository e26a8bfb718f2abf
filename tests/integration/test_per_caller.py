"""A token per calling service: each holder (a role's sessions together, or a user) has its own token of an
app and scope set unless the app's secret says "tokens": "shared"; each holder has its own hourly mint budget
beside the app's. The real handler against the moto server and the stub token endpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from token_vending.app_config import parse_app_config
from token_vending.tokens import TokenKey

from devstack.stack import TABLE_NAME, LocalStack

from .conftest import CALLER_HOLDER, CALLER_ROLE, CALLER_SESSION, SCOPES, Lambda
from .test_single_flight import results_of, start_cold_containers

ACCOUNT = "111122223333"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/support-service"
OTHER_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/support-service/support-session"
OTHER_HOLDER = f"arn:aws:sts::{ACCOUNT}:assumed-role/support-service"
SECOND_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/billing-service/another-session"
USER = f"arn:aws:iam::{ACCOUNT}:user/ops/alice"


@pytest.fixture
def two_roles(lam: Lambda) -> Lambda:
    """App `demo` allowing two roles; tokens per caller (the default: no `tokens` field)."""
    lam.stack.add_app("demo", allowed_callers=[CALLER_ROLE, OTHER_ROLE], client_id="demo-client",
                      client_secret=lam.stack.token_endpoint.clients["demo-client"])
    return lam


def share_tokens(stack: LocalStack, app: str = "demo", tokens: Any = "shared") -> None:
    secret = json.loads(stack.client("secretsmanager").get_secret_value(
        SecretId=f"sangoma/token-vending/{app}")["SecretString"])
    stack.put_secret(app, json.dumps({**secret, "tokens": tokens}))


def token_of(answer: Any) -> str:
    assert answer.status == 200, answer
    return str(answer.body["access_token"])


def audit_records(logs: str) -> list[dict[str, Any]]:
    return [line for line in (json.loads(text) for text in logs.splitlines() if text.startswith("{"))
            if "audit" in line]


def test_two_roles_get_two_tokens_and_two_sessions_of_one_role_the_same(two_roles: Lambda) -> None:
    lam = two_roles

    billing = token_of(lam.vend(caller=CALLER_SESSION))
    billing_again = token_of(lam.vend(caller=SECOND_SESSION))
    support = token_of(lam.vend(caller=OTHER_SESSION))

    assert billing == billing_again
    assert support != billing
    assert lam.stack.token_endpoint.request_count == 2
    holders = {item["holder"]["S"] for item in lam.stack.table_items() if item["kind"]["S"] == "token"}
    assert holders == {CALLER_HOLDER, OTHER_HOLDER}


def test_shared_tokens_give_every_allowed_caller_one_token(two_roles: Lambda) -> None:
    lam = two_roles
    share_tokens(lam.stack)

    assert token_of(lam.vend(caller=CALLER_SESSION)) == token_of(lam.vend(caller=OTHER_SESSION))
    assert lam.stack.token_endpoint.request_count == 1
    [item] = [item for item in lam.stack.table_items() if item["kind"]["S"] == "token"]
    assert item["holder"]["S"] == ""


def test_a_caller_admitted_by_its_account_still_gets_a_token_of_its_own(lam: Lambda) -> None:
    lam.stack.add_app("demo", allowed_callers=[ACCOUNT], client_id="demo-client",
                      client_secret=lam.stack.token_endpoint.clients["demo-client"])

    user = token_of(lam.vend(caller=USER))
    session = token_of(lam.vend(caller=CALLER_SESSION))

    assert user != session
    holders = {item["holder"]["S"] for item in lam.stack.table_items() if item["kind"]["S"] == "token"}
    assert holders == {USER, CALLER_HOLDER}  # a user holds its own; a session its role's
    assert all(len(holder) <= len(caller) for holder, caller in ((USER, USER), (CALLER_HOLDER, CALLER_SESSION)))


def test_a_report_by_one_holder_leaves_the_others_token_served(two_roles: Lambda) -> None:
    lam = two_roles
    billing = lam.vend(caller=CALLER_SESSION).body
    support = token_of(lam.vend(caller=OTHER_SESSION))
    assert billing

    assert lam.report(billing["fingerprint"], caller=CALLER_SESSION).status == 204
    lam.new_container()

    assert token_of(lam.vend(caller=OTHER_SESSION)) == support
    assert token_of(lam.vend(caller=CALLER_SESSION)) != billing["access_token"]
    assert lam.stack.token_endpoint.request_count == 3


def test_a_report_names_another_holders_fingerprint_and_drops_nothing(two_roles: Lambda, captured_logs: Any) -> None:
    lam = two_roles
    lam.vend(caller=CALLER_SESSION)
    support = lam.vend(caller=OTHER_SESSION).body
    assert support
    captured_logs()

    assert lam.report(support["fingerprint"], caller=CALLER_SESSION).status == 204  # not its token: kept

    [record] = audit_records(captured_logs())
    assert (record["holder"], record["dropped"]) == (CALLER_HOLDER, False)
    assert token_of(lam.vend(caller=OTHER_SESSION)) == support["access_token"]


@pytest.mark.usefixtures("budget_hour")
def test_a_caller_past_its_budget_gets_429_while_another_caller_of_the_app_mints(
        two_roles: Lambda, settings_env: Any, captured_logs: Any) -> None:
    lam = two_roles
    settings_env(MAX_MINTS_PER_CALLER_PER_HOUR=2)
    lam.vend(caller=CALLER_SESSION, scope="cx.agent-calls")
    lam.vend(caller=CALLER_SESSION, scope="cx.queue-calls")
    captured_logs()

    refused = lam.vend(caller=CALLER_SESSION, scope=SCOPES)  # a third scope set: a third mint
    cached = lam.vend(caller=SECOND_SESSION, scope="cx.agent-calls")  # its holder's cached token is still served
    other = lam.vend(caller=OTHER_SESSION, scope=SCOPES)

    assert (refused.status, refused.error) == (429, "mint_limit_reached")
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert cached.status == 200 and other.status == 200
    assert lam.stack.token_endpoint.request_count == 3
    records = audit_records(captured_logs())
    assert (records[0]["outcome"], records[0]["budget"], records[0]["holder"]) == (
        "mint_limit_reached", "caller", CALLER_HOLDER)
    assert '"MintLimitReached":1' in json.dumps(records[0], separators=(",", ":"))


@pytest.mark.usefixtures("budget_hour")
def test_the_callers_budget_counts_in_shared_mode_too(two_roles: Lambda, settings_env: Any) -> None:
    lam = two_roles
    share_tokens(lam.stack)
    settings_env(MAX_MINTS_PER_CALLER_PER_HOUR=1)
    lam.vend(caller=CALLER_SESSION, scope="cx.agent-calls")

    refused = lam.vend(caller=CALLER_SESSION, scope="cx.queue-calls")
    shared = lam.vend(caller=CALLER_SESSION, scope="cx.agent-calls")  # the shared token, already cached
    other = lam.vend(caller=OTHER_SESSION, scope="cx.queue-calls")

    assert refused.error == "mint_limit_reached"
    assert shared.status == 200 and other.status == 200


def test_an_item_copied_under_another_holders_key_is_not_served(two_roles: Lambda) -> None:
    lam = two_roles
    billing = token_of(lam.vend(caller=CALLER_SESSION))
    secret = lam.stack.client("secretsmanager").get_secret_value(SecretId="sangoma/token-vending/demo")
    config = parse_app_config("demo", secret["SecretString"], secret["VersionId"], lam.stack.token_endpoint.url)
    [item] = [item for item in lam.stack.table_items() if item["kind"]["S"] == "token"]
    other = TokenKey("demo", SCOPES, config.credential_id, OTHER_HOLDER)
    lam.stack.client("dynamodb").put_item(TableName=TABLE_NAME, Item={
        **item, "pk": {"S": other.table_key}, "holder": {"S": OTHER_HOLDER}})
    lam.new_container()

    support = token_of(lam.vend(caller=OTHER_SESSION))

    assert support != billing
    assert lam.stack.token_endpoint.request_count == 2


def test_an_app_switched_to_tokens_per_caller_no_longer_serves_its_shared_token(two_roles: Lambda) -> None:
    lam = two_roles
    share_tokens(lam.stack)
    shared = token_of(lam.vend(caller=CALLER_SESSION))
    share_tokens(lam.stack, tokens="per_caller")
    lam.new_container()

    own = token_of(lam.vend(caller=CALLER_SESSION))

    assert own != shared
    assert lam.stack.token_endpoint.request_count == 2


@pytest.mark.parametrize("tokens", ["per-caller", "SHARED", "", 1, None, ["shared"]])
def test_an_unknown_token_mode_is_a_500_logged_naming_the_field_never_the_value(
        lam: Lambda, captured_logs: Any, tokens: Any) -> None:
    share_tokens(lam.stack, tokens=tokens)

    answer = lam.vend()

    assert (answer.status, answer.error) == (500, "internal_error")
    logs = captured_logs()
    assert 'tokens must be \\"per_caller\\" or \\"shared\\"' in logs
    assert lam.stack.token_endpoint.request_count == 0


def test_a_prewarm_mints_a_callers_token_only_when_it_names_the_caller(lam: Lambda, captured_logs: Any) -> None:
    without = lam.invoke({"prewarm": [{"app": "demo", "scope": SCOPES}]})
    with_role = lam.invoke({"prewarm": [{"app": "demo", "scope": SCOPES, "caller": CALLER_ROLE}]})
    lam.new_container()

    vended = lam.vend(caller=CALLER_SESSION)

    # An entry without a caller can never be served for this app: it fails, so PrewarmFailuresAlarm fires.
    assert without == {"refreshed": 0, "minted": 0, "skipped": 0, "failed": 1, "reasons": {"failed:no_caller": 1},
                       "stale": {}}
    assert with_role == {"refreshed": 0, "minted": 1, "skipped": 0, "failed": 0, "reasons": {}, "stale": {}}
    assert vended.status == 200 and lam.stack.token_endpoint.request_count == 1  # the pre-warmed token
    runs = [json.loads(line) for line in captured_logs().splitlines() if '"pre-warm run"' in line]
    assert runs[0]["reasons"] == {"failed:no_caller": 1}


def test_a_prewarm_of_a_shared_app_needs_no_caller(lam: Lambda) -> None:
    share_tokens(lam.stack)

    assert lam.invoke({"prewarm": [{"app": "demo", "scope": SCOPES}]})["minted"] == 1
    lam.new_container()
    assert lam.vend(caller=CALLER_SESSION).status == 200
    assert lam.stack.token_endpoint.request_count == 1


def test_the_refresh_renews_each_holders_token_and_skips_one_no_longer_allowed(
        two_roles: Lambda, settings_env: Any, captured_logs: Any) -> None:
    lam = two_roles
    settings_env(REFRESH_BEFORE_SECONDS=7200)
    lam.stack.token_endpoint.expires_in = 3600  # every cached token is due
    lam.vend(caller=CALLER_SESSION)
    lam.vend(caller=OTHER_SESSION)
    lam.stack.add_app("demo", allowed_callers=[CALLER_ROLE], client_id="demo-client",
                      client_secret=lam.stack.token_endpoint.clients["demo-client"])
    captured_logs()

    counts = lam.invoke({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})

    assert counts == {"refreshed": 1, "minted": 0, "skipped": 0, "failed": 0, "reasons": {},
                      "stale": {"caller_not_admitted": 1}}
    [run] = [json.loads(line) for line in captured_logs().splitlines() if '"pre-warm run"' in line]
    assert run["stale"] == {"caller_not_admitted": 1}


@pytest.mark.slow
def test_cold_containers_fetch_once_per_holder(two_roles: Lambda, tmp_path: Path) -> None:
    lam = two_roles
    lam.stack.token_endpoint.delay = 0.5
    sessions = [f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/session-{index}"
                for index in range(4) for role in ("billing-service", "support-service")]

    results = results_of(start_cold_containers(lam.stack, [lam.api_event(caller=session) for session in sessions],
                                               len(sessions), tmp_path))

    assert [result["status"] for result in results] == [200] * len(sessions)
    assert lam.stack.token_endpoint.request_count == 2  # one per holder, whatever the session
    assert len({json.loads(result["body"])["access_token"] for result in results}) == 2
