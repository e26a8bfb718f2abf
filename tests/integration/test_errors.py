"""Every error the API promises, in the order it promises them (input, app, caller, scope),
and what each one costs: bad input makes no AWS or network call."""

from __future__ import annotations

import json
import socket

import pytest

from devstack.stub_token_endpoint import Reply

from .conftest import CALLER_ROLE, SCOPES, Lambda, MovableClock


def assert_error(answer, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert (answer.status, answer.error) == (status, code), answer.body
    assert set(answer.body) == {"error", "error_description"}
    assert answer.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("app", ["bad.app", "-leading-dash", "_x", "a" * 65, "demo%2F..%2Fother", "dé", "a b", ""])
def test_bad_app_name_is_400_without_any_call(lam: Lambda, app: str) -> None:
    answer = lam.vend(app=app)

    assert_error(answer, 400, "invalid_request")
    assert lam.stack.moto.calls == []
    assert lam.stack.token_endpoint.request_count == 0


@pytest.mark.parametrize("scope", [None, "", "   ", 'cx."quoted"', "cx\\back", "cx.a\tcx.b",
                                   " ".join(f"s{i}" for i in range(33))])
def test_bad_scope_is_400_without_any_call(lam: Lambda, scope: str | None) -> None:
    answer = lam.vend(scope=scope)

    assert_error(answer, 400, "invalid_request")
    assert lam.stack.moto.calls == []
    assert lam.stack.token_endpoint.request_count == 0


def test_32_scopes_are_accepted_as_input(lam: Lambda) -> None:
    scopes = [f"s{i}" for i in range(32)]
    lam.stack.add_app("demo", allowed_callers=[CALLER_ROLE], allowed_scopes=scopes,
                      client_id="demo-client", client_secret=lam.stack.token_endpoint.clients["demo-client"])
    lam.new_container()

    assert lam.vend(scope=" ".join(scopes)).status == 200


def test_input_is_checked_before_the_app_exists(lam: Lambda) -> None:
    assert_error(lam.vend(app="nosuchapp", scope=None), 400, "invalid_request")


def test_unknown_app_is_404(lam: Lambda) -> None:
    answer = lam.vend(app="nosuchapp")

    assert_error(answer, 404, "unknown_app")
    assert lam.stack.token_endpoint.request_count == 0


def test_an_unknown_app_is_remembered_so_a_flood_of_requests_costs_one_lookup(lam: Lambda) -> None:
    answers = [lam.vend(app="ghost") for _ in range(10)]

    assert {(a.status, a.error) for a in answers} == {(404, "unknown_app")}
    assert lam.stack.moto.calls == ["secretsmanager.GetSecretValue"]


def test_an_app_created_after_a_404_is_found_by_a_new_container(lam: Lambda) -> None:
    assert lam.vend(app="late").status == 404
    lam.stack.add_app("late", allowed_callers=[CALLER_ROLE])
    lam.new_container()

    assert lam.vend(app="late").status == 200


def test_unknown_app_is_reported_before_the_missing_identity(lam: Lambda) -> None:
    assert_error(lam.vend(app="nosuchapp", caller=None), 404, "unknown_app")


def test_no_identity_is_403_access_denied(lam: Lambda) -> None:
    assert_error(lam.vend(caller=None), 403, "access_denied")
    assert lam.stack.token_endpoint.request_count == 0


@pytest.mark.parametrize("caller", [
    "arn:aws:sts::111122223333:assumed-role/other-service/s",
    "arn:aws:sts::999999999999:assumed-role/billing-service/s",
    "arn:aws:iam::111122223333:user/billing-service",
])
def test_caller_not_allowed_is_403_access_denied(lam: Lambda, caller: str) -> None:
    assert_error(lam.vend(caller=caller), 403, "access_denied")
    assert lam.stack.token_endpoint.request_count == 0


def test_caller_is_checked_before_scope(lam: Lambda) -> None:
    answer = lam.vend(caller="arn:aws:sts::111122223333:assumed-role/other/s", scope="cx.admin")
    assert_error(answer, 403, "access_denied")


def test_scope_not_allowed_is_403_invalid_scope(lam: Lambda) -> None:
    answer = lam.vend(scope="cx.agent-calls cx.admin")

    assert_error(answer, 403, "invalid_scope")
    assert lam.stack.token_endpoint.request_count == 0


def test_empty_allowed_lists_allow_nobody(lam: Lambda) -> None:
    lam.stack.put_secret("open", json.dumps({"client_id": "c", "client_secret": "s"}))

    assert_error(lam.vend(app="open"), 403, "access_denied")


def test_whole_account_entry_admits_any_principal_of_it(lam: Lambda) -> None:
    lam.stack.add_app("acct", allowed_callers=["111122223333"])

    assert lam.vend(app="acct", caller="arn:aws:iam::111122223333:user/ops/alice").status == 200
    assert_error(lam.vend(app="acct", caller="arn:aws:iam::444455556666:user/alice"), 403, "access_denied")


@pytest.mark.parametrize(("secret", "problem"), [
    ("{not json", "not valid JSON"),
    (json.dumps({"client_id": "c", "allowed_callers": [CALLER_ROLE]}), "client_secret"),
    (json.dumps({"client_secret": "hunter2-very-secret", "allowed_callers": [CALLER_ROLE]}), "client_id"),
])
def test_broken_secret_is_500_and_a_log_line_naming_app_and_problem(lam: Lambda, captured_logs, secret: str,  # type: ignore[no-untyped-def]
                                                                    problem: str) -> None:
    lam.stack.put_secret("broken", secret)

    answer = lam.vend(app="broken")

    assert_error(answer, 500, "internal_error")
    assert answer.body["error_description"] == "internal error"
    logs = captured_logs()
    [line] = [json.loads(line) for line in logs.splitlines() if "misconfigured" in line]
    assert line["app"] == "broken"
    assert problem in line["problem"]
    assert "hunter2" not in logs


@pytest.mark.parametrize(("reply", "why"), [
    (Reply(401, {"error": "invalid_client"}), "credentials rejected"),
    (Reply(400, {"error": "invalid_client"}), "credentials rejected (400)"),
    (Reply(400, {"error": "invalid_scope"}), "request rejected"),
    (Reply(200, "<html>not json</html>"), "not JSON"),
    (Reply(200, {"token_type": "bearer", "expires_in": 3600}), "no access_token"),
    (Reply(200, {"access_token": "sgm_leak_me", "expires_in": -5}), "negative expires_in"),
    (Reply(200, {"access_token": "sgm_leak_me", "expires_in": 0}), "zero expires_in"),
    (Reply(200, {"access_token": "sgm_leak_me", "expires_in": "soon"}), "non-numeric expires_in"),
    (Reply(200, {"access_token": "sgm_leak_me", "expires_in": None}), "null expires_in"),
    (Reply(200, {"access_token": "sgm_leak_me", "expires_in": 3600, "scope": "cx.agent-calls"}), "narrower scope"),
])
def test_unusable_token_endpoint_answer_is_502(lam: Lambda, captured_logs, reply: Reply, why: str) -> None:  # type: ignore[no-untyped-def]
    lam.stack.token_endpoint.queue(reply)

    answer = lam.vend()

    assert_error(answer, 502, "upstream_error")
    assert lam.stack.token_endpoint.request_count == 1  # 4xx and unusable answers are not retried
    logs = captured_logs()
    assert "sgm_leak_me" not in logs + json.dumps(answer.body)
    assert "not json</html>" not in logs + json.dumps(answer.body)


def test_an_answer_without_expires_in_lives_the_default_lifetime_and_the_audit_says_so(  # type: ignore[no-untyped-def]
        lam: Lambda, settings_env, captured_logs) -> None:
    settings_env(DEFAULT_TOKEN_LIFETIME_SECONDS=600)
    lam.stack.token_endpoint.queue(Reply(200, {"access_token": "sgm_no_lifetime_given", "token_type": "bearer"}))

    fetched = lam.vend()
    cached = lam.vend()

    assert fetched.status == 200 and fetched.body and cached.body
    assert fetched.body["expires_in"] == 600  # RFC 6749 §5.1 only recommends expires_in
    assert 0 < cached.body["expires_in"] <= 600
    records = [json.loads(line) for line in captured_logs().splitlines() if '"audit":"vend"' in line]
    assert [record.get("lifetime") for record in records] == ["default", None]  # said by the vend that fetched


@pytest.mark.parametrize("code", ["invalid_scope", "unauthorized_client", "invalid_grant"])
def test_a_refusal_names_the_endpoints_registered_error_code_and_no_other_text(lam: Lambda, code: str) -> None:
    lam.stack.token_endpoint.queue(Reply(400, {"error": code, "error_description": "sgm_leak_me in free text"}))

    answer = lam.vend()

    assert_error(answer, 502, "upstream_error")
    assert answer.body and answer.body["error_description"] == f"the token endpoint refused the request (400 {code})"


def test_unreachable_token_endpoint_is_503(lam: Lambda, clock: MovableClock, settings_env) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings_env(TOKEN_URL=f"http://127.0.0.1:{port}/oauth/token")

    answer = lam.vend()

    assert_error(answer, 503, "upstream_unavailable")
    assert int(answer.headers["Retry-After"]) > 0


def test_token_endpoint_5xx_is_503_after_retries(lam: Lambda, clock: MovableClock) -> None:
    lam.stack.token_endpoint.queue(*[Reply(500, {"error": "server_error"})] * 3)

    answer = lam.vend()

    assert_error(answer, 503, "upstream_unavailable")
    assert lam.stack.token_endpoint.request_count == 3  # the first try and two retries
    assert "Retry-After" in answer.headers


def test_only_first_error_field_values_are_returned(lam: Lambda) -> None:
    answer = lam.vend(scope=SCOPES, caller=None)
    assert answer.body == {"error": "access_denied", "error_description": "no IAM caller identity in the request"}


@pytest.mark.parametrize("strip", ["identity", "requestContext", "null identity"])
def test_a_missing_identity_block_is_403_not_a_crash(lam: Lambda, strip: str) -> None:
    event = lam.api_event()
    if strip == "identity":
        del event["requestContext"]["identity"]
    elif strip == "requestContext":
        del event["requestContext"]
    else:
        event["requestContext"]["identity"] = None

    result = lam.invoke(event)

    assert result["statusCode"] == 403
    assert json.loads(result["body"])["error"] == "access_denied"
