"""Minting is bounded: a token cannot be reported (and so re-minted) moments after it was minted, and each
app has an hourly budget of upstream token requests shared by every container."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from token_vending.app_config import parse_app_config
from token_vending.tokens import TokenKey

from devstack.stack import TABLE_NAME, LocalStack

from .conftest import CALLER_HOLDER, CALLER_ROLE, SCOPES, Lambda

HOUR = 3600


def key_for(stack: LocalStack, scope: str = SCOPES, app: str = "demo") -> TokenKey:
    secret = stack.client("secretsmanager").get_secret_value(SecretId=f"sangoma/token-vending/{app}")
    config = parse_app_config(app, secret["SecretString"], secret["VersionId"], stack.token_endpoint.url)
    return TokenKey(app, scope, config.credential_id, CALLER_HOLDER)


def age_the_table_entry(stack: LocalStack, key: TokenKey, seconds: float) -> None:
    """Make the cached token look minted `seconds` ago (as if time had passed)."""
    stack.client("dynamodb").update_item(
        TableName=TABLE_NAME, Key={"pk": {"S": key.table_key}}, UpdateExpression="SET stored_at = :at",
        ExpressionAttributeValues={":at": {"N": str(time.time() - seconds)}})


def spend_the_budget(stack: LocalStack, app: str, limit: int) -> None:
    """Fill the app's mint counter for this hour and the next (a test may run across the hour)."""
    hour = int(time.time() // HOUR)
    for counted in (hour, hour + 1):
        stack.client("dynamodb").put_item(TableName=TABLE_NAME, Item={
            "pk": {"S": f"mints#{app}#{counted}"}, "kind": {"S": "mints"}, "count": {"N": str(limit)}})


def mint_counts(stack: LocalStack, app: str = "demo") -> int:
    """The app's own count (not its callers') this hour."""
    counted = re.compile(rf"mints#{re.escape(app)}#\d+")
    return sum(int(item["count"]["N"]) for item in stack.table_items() if counted.fullmatch(item["pk"]["S"]))


def emf_lines(logs: str) -> list[dict[str, Any]]:
    return [line for line in (json.loads(text) for text in logs.splitlines() if text.startswith("{")) if "_aws" in line]


# -- reports of freshly minted tokens ----------------------------------------------------------------------


def test_a_report_of_a_token_minted_moments_ago_is_429_slow_down_and_drops_nothing(
        lam: Lambda, settings_env: Any) -> None:
    settings_env(MIN_REPORT_AGE_SECONDS=60)  # the default
    vended = lam.vend().body
    assert vended

    reported = lam.report(vended["fingerprint"])
    again = lam.vend().body
    lam.new_container()
    from_table = lam.vend().body

    assert (reported.status, reported.error) == (429, "slow_down")
    assert 55 <= int(reported.headers["Retry-After"]) <= 60  # the seconds until it may be reported
    assert again and from_table
    assert again["access_token"] == from_table["access_token"] == vended["access_token"]
    assert lam.stack.token_endpoint.request_count == 1


def test_the_default_minimum_age_is_60_seconds(lam: Lambda, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIN_REPORT_AGE_SECONDS")
    lam.new_container()
    vended = lam.vend().body
    assert vended

    reported = lam.report(vended["fingerprint"])

    assert (reported.status, reported.error) == (429, "slow_down")
    assert 55 <= int(reported.headers["Retry-After"]) <= 60


def test_report_and_vend_in_a_loop_mints_once(lam: Lambda, settings_env: Any) -> None:
    settings_env(MIN_REPORT_AGE_SECONDS=60)
    statuses = []
    for _ in range(20):
        vended = lam.vend().body
        assert vended
        statuses.append(lam.report(vended["fingerprint"]).status)
        lam.new_container()

    assert set(statuses) == {429}
    assert lam.stack.token_endpoint.request_count == 1


def test_a_token_older_than_the_minimum_age_is_dropped_when_reported(lam: Lambda, settings_env: Any) -> None:
    settings_env(MIN_REPORT_AGE_SECONDS=60)
    vended = lam.vend().body
    assert vended
    age_the_table_entry(lam.stack, key_for(lam.stack), 61)
    lam.new_container()  # its memory holds no copy that says otherwise

    reported = lam.report(vended["fingerprint"])
    after = lam.vend().body

    assert reported.status == 204
    assert after and after["access_token"] != vended["access_token"]
    assert lam.stack.token_endpoint.request_count == 2


# -- the hourly mint budget --------------------------------------------------------------------------------


def test_every_upstream_request_is_counted_for_the_app(lam: Lambda) -> None:
    lam.vend(scope="cx.agent-calls")
    lam.vend(scope="cx.queue-calls")
    lam.vend(scope=SCOPES)
    lam.vend(scope=SCOPES)  # from memory: not a mint

    assert mint_counts(lam.stack) == 3
    counters = [item for item in lam.stack.table_items() if item["pk"]["S"].startswith("mints#")]
    assert counters and all(int(item["ttl"]["N"]) > time.time() + HOUR for item in counters)  # then TTL removes them


def test_past_the_budget_a_vend_that_would_mint_is_429_and_cached_tokens_are_still_served(
        lam: Lambda, settings_env: Any, captured_logs: Any) -> None:
    settings_env(MAX_MINTS_PER_APP_PER_HOUR=5)
    cached = lam.vend(scope="cx.agent-calls").body
    spend_the_budget(lam.stack, "demo", 5)

    refused = lam.vend(scope="cx.queue-calls")
    from_memory = lam.vend(scope="cx.agent-calls")
    lam.new_container()
    from_table = lam.vend(scope="cx.agent-calls")
    refused_elsewhere = lam.vend(scope="cx.queue-calls")

    assert (refused.status, refused.error) == (429, "mint_limit_reached")
    assert 1 <= int(refused.headers["Retry-After"]) <= HOUR  # the seconds left in the clock hour
    assert (refused_elsewhere.status, refused_elsewhere.error) == (429, "mint_limit_reached")
    assert cached and from_memory.body and from_table.body
    assert from_memory.body["access_token"] == from_table.body["access_token"] == cached["access_token"]
    assert lam.stack.token_endpoint.request_count == 1
    metrics = [line.get("MintLimitReached") for line in emf_lines(captured_logs())]
    assert metrics.count(1) == 2


def test_the_budget_is_per_app(lam: Lambda, settings_env: Any) -> None:
    settings_env(MAX_MINTS_PER_APP_PER_HOUR=1)
    lam.stack.add_app("other", allowed_callers=["111122223333"])
    spend_the_budget(lam.stack, "demo", 1)

    assert lam.vend().error == "mint_limit_reached"
    assert lam.vend(app="other").status == 200


def test_a_scheduled_run_past_the_budget_skips_with_the_reason(lam: Lambda, settings_env: Any,
                                                               captured_logs: Any) -> None:
    settings_env(MAX_MINTS_PER_APP_PER_HOUR=3)
    spend_the_budget(lam.stack, "demo", 3)

    counts = lam.invoke({"prewarm": [{"app": "demo", "scope": SCOPES, "caller": CALLER_ROLE}]})

    assert counts == {"refreshed": 0, "minted": 0, "skipped": 1, "failed": 0,
                      "reasons": {"skipped:mint_limit_reached": 1}, "stale": {}}
    assert lam.stack.token_endpoint.request_count == 0
    [run] = [json.loads(line) for line in captured_logs().splitlines() if '"pre-warm run"' in line]
    assert run["reasons"] == {"skipped:mint_limit_reached": 1}
