"""The token endpoint failing: what the caller gets and how many requests the stub saw."""

from __future__ import annotations

import json
import time

from devstack.stub_token_endpoint import Reply

from .conftest import SCOPES, Lambda

TOKEN = {"access_token": "sgm_scripted", "token_type": "bearer", "scope": SCOPES, "expires_in": 24_304_413}


def test_a_5xx_is_retried_and_the_vend_succeeds(lam: Lambda) -> None:
    lam.stack.token_endpoint.queue(Reply(500, {"error": "server_error"}), Reply(502, "bad gateway"))

    answer = lam.vend()

    assert answer.status == 200
    assert lam.stack.token_endpoint.request_count == 3


def test_503_every_time_gives_503_with_retry_after_after_bounded_retries(lam: Lambda) -> None:
    lam.stack.token_endpoint.queue(*[Reply(503, "unavailable")] * 5)

    started = time.monotonic()
    answer = lam.vend()

    assert (answer.status, answer.error) == (503, "upstream_unavailable")
    assert int(answer.headers["Retry-After"]) >= 1
    assert lam.stack.token_endpoint.request_count == 3
    assert time.monotonic() - started < 10


def test_429_with_a_short_retry_after_is_honoured_then_retried(lam: Lambda) -> None:
    lam.stack.token_endpoint.queue(Reply(429, {"error": "slow_down"}, headers={"Retry-After": "1"}))

    started = time.monotonic()
    answer = lam.vend()

    assert answer.status == 200
    assert lam.stack.token_endpoint.request_count == 2
    assert time.monotonic() - started >= 0.9  # it waited as told


def test_429_with_a_long_retry_after_is_passed_on_and_remembered(lam: Lambda) -> None:
    lam.stack.token_endpoint.queue(Reply(429, {"error": "slow_down"}, headers={"Retry-After": "30"}))

    first = lam.vend()
    second = lam.vend()
    other_scope = lam.vend(scope="cx.agent-calls")  # the whole app waits, not just one key

    assert (first.status, first.error) == (503, "upstream_unavailable")
    assert first.headers["Retry-After"] == "30"
    assert (second.status, second.error) == (503, "upstream_unavailable")
    assert 28 <= int(second.headers["Retry-After"]) <= 30
    assert other_scope.status == 503
    assert lam.stack.token_endpoint.request_count == 1  # neither later vend called


def test_a_junk_retry_after_is_treated_as_absent(lam: Lambda) -> None:
    lam.stack.token_endpoint.queue(Reply(503, "x", headers={"Retry-After": "soon-ish"}))

    assert lam.vend().status == 200
    assert lam.stack.token_endpoint.request_count == 2


def test_503_with_retry_after_is_remembered_until_it_passes(lam: Lambda) -> None:
    lam.stack.token_endpoint.queue(Reply(503, "maintenance", headers={"Retry-After": "3"}))

    first = lam.vend()
    during = lam.vend()
    time.sleep(3.1)
    after = lam.vend()

    assert first.status == during.status == 503
    assert lam.stack.token_endpoint.request_count == 2
    assert after.status == 200


def test_an_answer_slower_than_the_read_timeout_is_retried_then_503(lam: Lambda, settings_env) -> None:  # type: ignore[no-untyped-def]
    settings_env(TOKEN_READ_TIMEOUT_SECONDS=0.3)
    lam.stack.token_endpoint.queue(*[Reply(200, TOKEN, delay=1.0)] * 3)

    answer = lam.vend()

    assert (answer.status, answer.error) == (503, "upstream_unavailable")
    assert lam.stack.token_endpoint.request_count == 3


def test_a_slow_answer_then_a_fast_one_succeeds(lam: Lambda, settings_env) -> None:  # type: ignore[no-untyped-def]
    settings_env(TOKEN_READ_TIMEOUT_SECONDS=0.3)
    lam.stack.token_endpoint.queue(Reply(200, TOKEN, delay=1.0))

    answer = lam.vend()

    assert answer.status == 200
    assert lam.stack.token_endpoint.request_count == 2


def test_a_connection_reset_is_retried(lam: Lambda) -> None:
    lam.stack.token_endpoint.queue(Reply(reset=True))

    assert lam.vend().status == 200
    assert lam.stack.token_endpoint.request_count == 2


def test_connection_reset_every_time_gives_503(lam: Lambda) -> None:
    lam.stack.token_endpoint.queue(*[Reply(reset=True)] * 3)

    answer = lam.vend()

    assert (answer.status, answer.error) == (503, "upstream_unavailable")
    assert lam.stack.token_endpoint.request_count == 3


def test_other_4xx_is_not_retried(lam: Lambda) -> None:
    lam.stack.token_endpoint.queue(Reply(403, {"error": "access_denied"}))

    answer = lam.vend()

    assert (answer.status, answer.error) == (502, "upstream_error")
    assert lam.stack.token_endpoint.request_count == 1


def test_an_absurd_expires_in_is_capped_at_two_years(lam: Lambda) -> None:
    lam.stack.token_endpoint.expires_in = 10 * 365 * 86_400

    answer = lam.vend()

    assert answer.status == 200 and answer.body
    assert answer.body["expires_in"] <= 2 * 365 * 86_400


def test_invalid_client_is_remembered_for_a_few_seconds_then_tried_again(lam: Lambda, settings_env) -> None:  # type: ignore[no-untyped-def]
    settings_env(INVALID_CLIENT_COOLDOWN_SECONDS=2)
    lam.stack.token_endpoint.queue(Reply(401, {"error": "invalid_client"}))

    first = lam.vend()
    during = lam.vend()
    time.sleep(2.1)
    after = lam.vend()

    assert (first.status, first.error) == (502, "upstream_error")
    assert (during.status, during.error) == (503, "upstream_unavailable")
    assert 1 <= int(during.headers["Retry-After"]) <= 2
    assert after.status == 200
    assert lam.stack.token_endpoint.request_count == 2


def test_a_new_secret_version_clears_a_remembered_failure(lam: Lambda, settings_env) -> None:  # type: ignore[no-untyped-def]
    settings_env(SECRET_CACHE_SECONDS=0)
    lam.stack.token_endpoint.queue(Reply(401, {"error": "invalid_client"}))
    assert lam.vend().status == 502
    assert lam.vend().status == 503

    lam.stack.add_app("demo", allowed_callers=["111122223333"])  # new credentials, new version

    assert lam.vend().status == 200


def test_the_same_token_again_is_stored_and_served_without_looping(lam: Lambda) -> None:
    endpoint = lam.stack.token_endpoint
    endpoint.same_token = True
    endpoint.expires_in = 250  # below MIN_TTL_SECONDS: a cached copy would normally be refetched
    first = lam.vend()
    endpoint.expires_in = 240  # "Token can be renewed only once it is expired"
    lam.new_container()
    second = lam.vend()
    lam.new_container()
    third = lam.vend()
    fourth = lam.vend()

    assert first.body and second.body and third.body and fourth.body
    assert first.body["access_token"] == second.body["access_token"] == third.body["access_token"]
    assert 0 < third.body["expires_in"] <= 240
    assert endpoint.request_count == 2  # asked once more, then served what came back until it expires


def test_error_answers_never_echo_the_upstream_body(lam: Lambda, captured_logs) -> None:  # type: ignore[no-untyped-def]
    lam.stack.token_endpoint.queue(Reply(400, {"error": "invalid_scope", "error_description": "sekrit-detail"}))

    answer = lam.vend()

    assert answer.status == 502
    assert "sekrit-detail" not in json.dumps(answer.body) + captured_logs()


def test_a_retry_after_is_shared_with_every_container(lam: Lambda) -> None:
    lam.stack.token_endpoint.queue(Reply(503, "maintenance", headers={"Retry-After": "30"}))
    first = lam.vend()
    lam.new_container()

    other_container = lam.vend()

    assert (other_container.status, other_container.error) == (503, "upstream_unavailable")
    assert 28 <= int(other_container.headers["Retry-After"]) <= 30
    assert lam.stack.token_endpoint.request_count == 1
    assert first.status == 503


def test_rejected_credentials_are_shared_with_every_container(lam: Lambda) -> None:
    lam.stack.token_endpoint.queue(Reply(401, {"error": "invalid_client"}))
    first = lam.vend()
    lam.new_container()

    other_container = lam.vend(scope="cx.agent-calls")

    assert (first.status, first.error) == (502, "upstream_error")
    assert (other_container.status, other_container.error) == (503, "upstream_unavailable")
    assert lam.stack.token_endpoint.request_count == 1


def test_a_rotation_after_rejected_credentials_is_used_within_a_second(lam: Lambda) -> None:
    endpoint = lam.stack.token_endpoint
    endpoint.clients.clear()  # the app's credentials are revoked upstream
    assert lam.vend().status == 502  # secret re-read once: still the old credentials

    lam.stack.add_app("demo", allowed_callers=["111122223333"], client_id="demo-client-v2")  # fixed
    time.sleep(1.1)
    answer = lam.vend()

    assert answer.status == 200
    assert [r.client_id for r in endpoint.received] == ["demo-client", "demo-client-v2"]
