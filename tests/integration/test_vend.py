"""GET /apps/{app}/token end to end: the real handler, a moto server and the stub token endpoint."""

from __future__ import annotations

import base64
import time
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import parse_qs

from .conftest import CALLER_SESSION, SCOPES, Lambda, MovableClock


def test_vend_fetches_a_token_with_exactly_the_scopes_asked(lam: Lambda) -> None:
    answer = lam.vend(scope="cx.queue-calls cx.agent-calls")

    assert answer.status == 200
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Pragma"] == "no-cache"
    body = answer.body
    assert body is not None
    assert set(body) == {"access_token", "token_type", "scope", "expires_in", "expires_at", "fingerprint"}
    assert body["scope"] == SCOPES
    assert body["token_type"] == "bearer"
    assert 24_304_400 < body["expires_in"] <= 24_304_413
    expires_at = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(expires_at.timestamp() - (time.time() + body["expires_in"])) < 3

    [received] = lam.stack.token_endpoint.received
    assert received.content_type == "application/x-www-form-urlencoded"
    secret = lam.stack.token_endpoint.clients["demo-client"]
    assert received.authorization == "Basic " + base64.b64encode(f"demo-client:{secret}".encode()).decode()
    assert received.form == parse_qs(f"grant_type=client_credentials&scope={SCOPES}")
    assert received.scope == SCOPES


def test_second_vend_is_served_from_memory_without_any_aws_call(lam: Lambda) -> None:
    first = lam.vend()
    lam.stack.moto.calls.clear()

    second = lam.vend()

    assert second.status == 200
    assert second.body and first.body
    assert second.body["access_token"] == first.body["access_token"]
    assert lam.stack.moto.calls == []
    assert lam.stack.token_endpoint.request_count == 1


def test_fresh_container_is_served_from_the_table_without_upstream_call(lam: Lambda) -> None:
    first = lam.vend()
    lam.new_container()
    lam.stack.moto.calls.clear()

    second = lam.vend()

    assert second.status == 200
    assert second.body and first.body
    assert second.body["access_token"] == first.body["access_token"]
    assert lam.stack.token_endpoint.request_count == 1
    # One read of each, whatever their order: no lease, no write, no second read.
    assert Counter(lam.stack.moto.calls) == {"secretsmanager.GetSecretValue": 1, "dynamodb.GetItem": 1,
                                             "kms.Decrypt": 1}


def test_scope_order_and_duplicates_share_one_token(lam: Lambda) -> None:
    first = lam.vend(scope="cx.queue-calls cx.agent-calls cx.agent-calls")
    second = lam.vend(scope="cx.agent-calls cx.queue-calls")
    repeated = lam.vend(scope=["cx.queue-calls", "cx.agent-calls"])

    assert first.body and second.body and repeated.body
    assert first.body["access_token"] == second.body["access_token"] == repeated.body["access_token"]
    assert lam.stack.token_endpoint.request_count == 1


def test_different_scope_sets_get_different_tokens(lam: Lambda) -> None:
    both = lam.vend(scope=SCOPES)
    one = lam.vend(scope="cx.agent-calls")

    assert both.body and one.body
    assert both.body["access_token"] != one.body["access_token"]
    assert one.body["scope"] == "cx.agent-calls"
    assert [r.scope for r in lam.stack.token_endpoint.received] == [SCOPES, "cx.agent-calls"]


def test_token_near_expiry_in_the_table_is_refetched(lam: Lambda, settings_env) -> None:  # type: ignore[no-untyped-def]
    lam.stack.token_endpoint.expires_in = 200  # below MIN_TTL_SECONDS (300): never served from a cache
    first = lam.vend()
    lam.new_container()

    second = lam.vend()

    assert first.status == second.status == 200
    assert first.body and second.body
    assert second.body["access_token"] != first.body["access_token"]
    assert lam.stack.token_endpoint.request_count == 2


def test_expired_table_entry_is_refetched_even_before_dynamodb_ttl_deletes_it(  # type: ignore[no-untyped-def]
        lam: Lambda, settings_env, clock: MovableClock) -> None:
    settings_env(MIN_TTL_SECONDS=0)
    lam.stack.token_endpoint.expires_in = 2
    first = lam.vend()
    clock.advance(2.1)  # the token's two seconds pass
    lam.new_container()

    second = lam.vend()

    assert first.body and second.body
    assert second.body["access_token"] != first.body["access_token"]
    assert lam.stack.token_endpoint.request_count == 2


def test_table_never_holds_the_plaintext_token(lam: Lambda) -> None:
    answer = lam.vend()
    assert answer.body
    token = answer.body["access_token"]

    items = lam.stack.table_items()

    assert items
    assert token.encode() not in repr(items).encode()
    assert not any(token in repr(value) for item in items for value in item.values())


def test_token_and_client_secret_never_reach_the_logs(lam: Lambda, captured_logs) -> None:  # type: ignore[no-untyped-def]
    secret = lam.stack.token_endpoint.clients["demo-client"]
    answer = lam.vend()
    lam.new_container()
    lam.vend()
    assert answer.body
    token = answer.body["access_token"]

    logs = captured_logs()

    assert '"message":"vend"' in logs  # the audit line is there...
    assert answer.body["fingerprint"] in logs
    assert CALLER_SESSION in logs
    assert token not in logs  # ...without the token
    assert secret not in logs


def test_answers_carry_single_value_headers_too(lam: Lambda) -> None:
    ok = lam.invoke(lam.api_event())
    denied = lam.invoke(lam.api_event(caller=None))

    assert ok["headers"]["Cache-Control"] == "no-store"
    assert ok["headers"]["Pragma"] == "no-cache"
    assert denied["headers"]["Cache-Control"] == "no-store"


def test_a_fresh_token_shows_the_lifetime_the_endpoint_gave(lam: Lambda) -> None:
    lam.stack.token_endpoint.expires_in = 3600

    answer = lam.vend()

    assert answer.body and answer.body["expires_in"] == 3600
