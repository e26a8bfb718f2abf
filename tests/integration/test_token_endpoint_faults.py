"""The token endpoint failing: what the caller gets and how many requests the stub saw."""

from __future__ import annotations

import json
import time

import pytest

from devstack.stack import TABLE_NAME
from devstack.stub_token_endpoint import Reply

from .conftest import SCOPES, Lambda, MovableClock

TOKEN = {"access_token": "sgm_scripted", "token_type": "bearer", "scope": SCOPES, "expires_in": 24_304_413}


@pytest.fixture(autouse=True)
def owned_clock(clock: MovableClock) -> MovableClock:
    """Every test here owns the function's clock: the back-offs between retries are recorded and jumped over."""
    return clock


def end_remembered_failures(lam: Lambda) -> None:
    """Make every failure remembered in the table run out now, as if its time had passed."""
    dynamodb = lam.stack.client("dynamodb")
    for item in lam.stack.table_items():
        if item["pk"]["S"].startswith("cooldown#"):
            dynamodb.put_item(TableName=TABLE_NAME, Item={**item, "until": {"N": str(time.time() - 1)}})


def test_a_5xx_is_retried_and_the_vend_succeeds(lam: Lambda) -> None:
    lam.stack.token_endpoint.queue(Reply(500, {"error": "server_error"}), Reply(502, "bad gateway"))

    answer = lam.vend()

    assert answer.status == 200
    assert lam.stack.token_endpoint.request_count == 3


def test_503_every_time_gives_503_with_retry_after_after_bounded_retries(lam: Lambda) -> None:
    lam.stack.token_endpoint.queue(*[Reply(503, "unavailable")] * 5)

    answer = lam.vend()

    assert (answer.status, answer.error) == (503, "upstream_unavailable")
    assert int(answer.headers["Retry-After"]) >= 1
    assert lam.stack.token_endpoint.request_count == 3


def test_429_with_a_short_retry_after_is_honoured_then_retried(lam: Lambda, clock: MovableClock) -> None:
    lam.stack.token_endpoint.queue(Reply(429, {"error": "slow_down"}, headers={"Retry-After": "1"}))

    answer = lam.vend()

    assert answer.status == 200
    assert lam.stack.token_endpoint.request_count == 2
    assert clock.waits == [1]  # it waited as told before asking again


def test_429_with_a_long_retry_after_is_passed_on_and_remembered(lam: Lambda) -> None:
    lam.stack.token_endpoint.queue(Reply(429, {"error": "slow_down"}, headers={"Retry-After": "30"}))

    first = lam.vend()
    second = lam.vend()
    other_scope = lam.vend(scope="cx.agent-calls")  # the whole app waits, not just one key

    assert (first.status, first.error) == (503, "upstream_unavailable")
    assert first.headers["Retry-After"] == "30"
    assert (second.status, second.error) == (503, "upstream_unavailable")
    assert 20 <= int(second.headers["Retry-After"]) <= 30
    assert other_scope.status == 503
    assert lam.stack.token_endpoint.request_count == 1  # neither later vend called


def test_a_junk_retry_after_is_treated_as_absent(lam: Lambda) -> None:
    lam.stack.token_endpoint.queue(Reply(503, "x", headers={"Retry-After": "soon-ish"}))

    assert lam.vend().status == 200
    assert lam.stack.token_endpoint.request_count == 2


def test_503_with_retry_after_is_remembered_until_it_passes(lam: Lambda) -> None:
    lam.stack.token_endpoint.queue(Reply(503, "maintenance", headers={"Retry-After": "30"}))

    first = lam.vend()
    during = lam.vend()
    lam.new_container()  # a container that knows the failure only from the table...
    end_remembered_failures(lam)  # ...once its time has passed
    after = lam.vend()

    assert first.status == during.status == 503
    assert after.status == 200
    assert lam.stack.token_endpoint.request_count == 2


# A second of read timeout: a loaded machine answers a prompt reply well within it, and a late one (the stub waits
# 2.5 s first) never is.
SLOW = Reply(200, TOKEN, delay=2.5)


def test_an_answer_slower_than_the_read_timeout_is_retried_then_503(lam: Lambda, settings_env) -> None:  # type: ignore[no-untyped-def]
    settings_env(TOKEN_READ_TIMEOUT_SECONDS=1)
    lam.stack.token_endpoint.queue(SLOW, SLOW, SLOW)

    answer = lam.vend()

    assert (answer.status, answer.error) == (503, "upstream_unavailable")
    assert lam.stack.token_endpoint.request_count == 3


def test_a_slow_answer_then_a_fast_one_succeeds(lam: Lambda, settings_env) -> None:  # type: ignore[no-untyped-def]
    settings_env(TOKEN_READ_TIMEOUT_SECONDS=1)
    lam.stack.token_endpoint.queue(SLOW)

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
    settings_env(INVALID_CLIENT_COOLDOWN_SECONDS=30)
    lam.stack.token_endpoint.queue(Reply(401, {"error": "invalid_client"}))

    first = lam.vend()
    during = lam.vend()
    lam.new_container()
    end_remembered_failures(lam)
    after = lam.vend()

    assert (first.status, first.error) == (502, "upstream_error")
    assert (during.status, during.error) == (503, "upstream_unavailable")
    assert 20 <= int(during.headers["Retry-After"]) <= 30
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
    assert 20 <= int(other_container.headers["Retry-After"]) <= 30
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


def test_a_rotation_after_rejected_credentials_is_used_within_a_second(lam: Lambda, clock: MovableClock) -> None:
    endpoint = lam.stack.token_endpoint
    endpoint.clients.clear()  # the app's credentials are revoked upstream
    assert lam.vend().status == 502  # secret re-read once: still the old credentials

    lam.stack.add_app("demo", allowed_callers=["111122223333"], client_id="demo-client-v2")  # fixed
    clock.advance(1.1)
    answer = lam.vend()

    assert answer.status == 200
    assert [r.client_id for r in endpoint.received] == ["demo-client", "demo-client-v2"]


# -- failures are remembered, briefly ----------------------------------------------------------------------


def test_five_vends_against_a_failing_endpoint_make_one_fetch_not_five(lam: Lambda) -> None:
    lam.stack.token_endpoint.queue(*[Reply(500, {"error": "server_error"})] * 20)

    answers = [lam.vend() for _ in range(5)]

    assert [(a.status, a.error) for a in answers] == [(503, "upstream_unavailable")] * 5
    assert lam.stack.token_endpoint.request_count == 3  # the first vend's request and its two retries
    assert all(1 <= int(a.headers["Retry-After"]) <= 5 for a in answers[1:])  # UPSTREAM_FAILURE_COOLDOWN_SECONDS


@pytest.mark.parametrize("fault", [
    pytest.param(Reply(503, "down"), id="5xx-without-retry-after"),
    pytest.param(Reply(reset=True), id="connection-reset"),
])
def test_a_failing_endpoint_is_remembered_by_every_container(lam: Lambda, fault: Reply) -> None:
    lam.stack.token_endpoint.queue(*[fault] * 3)
    first = lam.vend()
    lam.new_container()

    other_container = lam.vend(scope="cx.agent-calls")  # the whole app waits, not just one key

    assert first.status == other_container.status == 503
    assert other_container.error == "upstream_unavailable"
    assert 1 <= int(other_container.headers["Retry-After"]) <= 5
    assert lam.stack.token_endpoint.request_count == 3


def test_an_unreachable_endpoint_is_remembered(lam: Lambda, settings_env) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings_env(TOKEN_URL=f"http://127.0.0.1:{port}/oauth/token", UPSTREAM_FAILURE_COOLDOWN_SECONDS=30)

    first, second = lam.vend(), lam.vend()

    assert first.status == second.status == 503
    assert 20 <= int(second.headers["Retry-After"]) <= 30
    failures = [item for item in lam.stack.table_items() if item["pk"]["S"].startswith("cooldown#demo#")]
    assert [item["streak"]["N"] for item in failures] == ["1"]


def test_failures_that_continue_hold_off_twice_as_long_each_time_up_to_a_minute(
        lam: Lambda, settings_env) -> None:  # type: ignore[no-untyped-def]
    settings_env(UPSTREAM_FAILURE_COOLDOWN_SECONDS=5)
    lam.stack.token_endpoint.queue(*[Reply(500, "down")] * 30)
    held_off = []
    for _ in range(6):
        lam.vend()  # fails (after its retries), then holds the app off
        held_off.append(int(lam.vend().headers["Retry-After"]))
        end_remembered_failures(lam)  # the hold-off passes...
        lam.new_container()  # ...and a container that knows of it only from the table tries again

    assert held_off[0] <= 5
    assert [seconds > 20 for seconds in held_off] == [False, False, False, True, True, True]
    assert held_off[-1] <= 60 and held_off[-2] <= 60


def test_a_success_ends_the_streak(lam: Lambda, settings_env) -> None:  # type: ignore[no-untyped-def]
    settings_env(UPSTREAM_FAILURE_COOLDOWN_SECONDS=5)
    lam.stack.token_endpoint.queue(*[Reply(500, "down")] * 3)
    lam.vend()
    end_remembered_failures(lam)
    lam.new_container()
    assert lam.vend().status == 200
    lam.stack.token_endpoint.queue(*[Reply(500, "down")] * 3)

    lam.vend(scope="cx.agent-calls")
    again = lam.vend(scope="cx.agent-calls")

    assert int(again.headers["Retry-After"]) <= 5  # back to the first step
    assert not [item for item in lam.stack.table_items() if item["pk"]["S"].startswith("cooldown#")
                and item["streak"]["N"] != "1"]


@pytest.mark.parametrize("reply", [
    pytest.param(Reply(400, {"error": "invalid_scope"}), id="400"),
    pytest.param(Reply(403, {"error": "access_denied"}), id="403"),
    pytest.param(Reply(200, "<html>not json</html>"), id="unusable"),
    pytest.param(Reply(307, "", headers={"Location": "http://127.0.0.1:9/elsewhere"}), id="redirect"),
])
def test_a_refusal_or_unusable_answer_is_remembered_for_that_key_only(lam: Lambda, reply: Reply) -> None:
    lam.stack.token_endpoint.queue(reply)

    first, second = lam.vend(), lam.vend()
    other_key = lam.vend(scope="cx.agent-calls")

    assert (first.status, first.error) == (second.status, second.error) == (502, "upstream_error")
    assert second.body == first.body  # the same answer
    assert other_key.status == 200
    assert lam.stack.token_endpoint.request_count == 2  # the refused key's one, the other key's one


def test_a_redirect_is_never_followed(lam: Lambda) -> None:
    elsewhere = lam.stack.token_endpoint.url.replace("/oauth/token", "/elsewhere")
    lam.stack.token_endpoint.queue(Reply(308, "", headers={"Location": elsewhere}), Reply(200, TOKEN))

    answer = lam.vend()

    assert (answer.status, answer.error) == (502, "upstream_error")
    assert lam.stack.token_endpoint.request_count == 1
    assert not [item for item in lam.stack.table_items() if item["pk"]["S"].startswith("token#")]


def test_a_body_trickled_past_the_deadline_is_503_and_no_second_fetch_follows(
        lam: Lambda, settings_env) -> None:  # type: ignore[no-untyped-def]
    settings_env(TOKEN_FETCH_DEADLINE_SECONDS=1)
    lam.stack.token_endpoint.queue(Reply(200, TOKEN, drip=0.2))  # about 20 s for the whole answer

    answer = lam.vend()
    again = lam.vend()

    assert (answer.status, answer.error) == (503, "upstream_unavailable")
    assert again.status == 503  # remembered: not asked again at once
    assert lam.stack.token_endpoint.request_count == 1


def test_a_plain_http_token_url_is_refused_before_any_call(lam: Lambda, settings_env, captured_logs) -> None:  # type: ignore[no-untyped-def]
    settings_env(TOKEN_URL="http://auth.sangoma.example/oauth/token")
    lam.stack.moto.calls.clear()

    answers = [lam.vend() for _ in range(3)]

    assert [(a.status, a.error) for a in answers] == [(500, "internal_error")] * 3
    assert lam.stack.moto.calls == []
    assert lam.stack.token_endpoint.request_count == 0
    logs = captured_logs()
    assert logs.count("the function's settings are invalid") == 1  # once per container
    assert "TOKEN_URL must be an https URL" in logs and "auth.sangoma.example" not in logs  # the setting, not its value


def test_a_new_token_url_never_serves_a_token_of_the_old_endpoint(lam: Lambda, settings_env) -> None:  # type: ignore[no-untyped-def]
    sandbox = lam.vend().body
    # The same stub under another name stands in for the production endpoint.
    settings_env(TOKEN_URL=lam.stack.token_endpoint.url.replace("127.0.0.1", "localhost"))

    production = lam.vend().body

    assert sandbox and production
    assert production["access_token"] != sandbox["access_token"]
    assert lam.stack.token_endpoint.request_count == 2
