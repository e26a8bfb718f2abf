"""Credential rotation and invalidation of revoked tokens."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from .conftest import CALLER_ROLE, CALLER_SESSION, Lambda, child_env

OTHER_ROLE = "arn:aws:iam::111122223333:role/reporting"
OTHER_SESSION = "arn:aws:sts::111122223333:assumed-role/reporting/r1"


def basic_auth_user(lam: Lambda) -> str:
    header = lam.stack.token_endpoint.received[-1].authorization or ""
    return base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")[0]


def test_rotated_credentials_are_used_and_old_tokens_no_longer_served(lam: Lambda, settings_env) -> None:  # type: ignore[no-untyped-def]
    settings_env(SECRET_CACHE_SECONDS=0)
    old = lam.vend()
    lam.stack.add_app("demo", allowed_callers=[CALLER_ROLE], client_id="demo-client-v2")

    new = lam.vend()
    lam.new_container()
    from_table = lam.vend()

    assert old.body and new.body and from_table.body
    assert new.body["access_token"] != old.body["access_token"]
    assert from_table.body["access_token"] == new.body["access_token"]
    assert basic_auth_user(lam) == "demo-client-v2"
    assert lam.stack.token_endpoint.request_count == 2


def test_credentials_are_reread_once_when_the_endpoint_says_invalid_client(lam: Lambda) -> None:
    lam.vend(scope="cx.agent-calls")  # the app's secret is now in this container's memory
    lam.stack.token_endpoint.clients.clear()  # the old credentials are revoked upstream...
    lam.stack.add_app("demo", allowed_callers=[CALLER_ROLE], client_id="demo-client-v2")  # ...and rotated

    answer = lam.vend(scope="cx.queue-calls")

    assert answer.status == 200
    assert [r.client_id for r in lam.stack.token_endpoint.received] == ["demo-client", "demo-client",
                                                                         "demo-client-v2"]


def test_a_policy_only_change_applies_without_a_new_token(lam: Lambda, settings_env) -> None:  # type: ignore[no-untyped-def]
    settings_env(SECRET_CACHE_SECONDS=0)
    secret = json.loads(lam.stack.client("secretsmanager").get_secret_value(
        SecretId="sangoma/token-vending/demo")["SecretString"])
    lam.stack.put_secret("demo", json.dumps({**secret, "tokens": "shared"}))  # one token for every allowed caller
    first = lam.vend()
    lam.stack.put_secret("demo", json.dumps({**secret, "tokens": "shared", "allowed_callers": [OTHER_ROLE]}))

    denied = lam.vend(caller=CALLER_SESSION)
    allowed = lam.vend(caller=OTHER_SESSION)

    assert denied.error == "access_denied"
    assert allowed.status == 200 and allowed.body and first.body
    assert allowed.body["access_token"] == first.body["access_token"]
    assert lam.stack.token_endpoint.request_count == 1


def test_a_reported_token_is_dropped_and_the_next_vend_fetches_a_new_one(lam: Lambda) -> None:
    first = lam.vend()
    assert first.body

    reported = lam.report(first.body["fingerprint"])
    second = lam.vend()

    assert reported.status == 204 and reported.body is None
    assert reported.headers["Cache-Control"] == "no-store"
    assert second.body and second.body["access_token"] != first.body["access_token"]
    assert lam.stack.token_endpoint.request_count == 2


def test_a_burst_of_reports_about_one_token_causes_one_new_fetch(lam: Lambda) -> None:
    first = lam.vend()
    assert first.body
    fingerprint = first.body["fingerprint"]

    answers = []
    for _ in range(5):
        answers.append(lam.report(fingerprint).status)
        answers.append(lam.vend().status)
        lam.new_container()

    assert answers == [204, 200] * 5
    assert lam.stack.token_endpoint.request_count == 2


def test_a_report_about_an_old_token_does_not_evict_the_new_one(lam: Lambda) -> None:
    old = lam.vend()
    assert old.body
    lam.report(old.body["fingerprint"])
    new = lam.vend()
    lam.new_container()

    stale_report = lam.report(old.body["fingerprint"])
    after = lam.vend()

    assert stale_report.status == 204
    assert new.body and after.body
    assert after.body["access_token"] == new.body["access_token"]
    assert lam.stack.token_endpoint.request_count == 2


def test_reports_are_checked_like_vends(lam: Lambda) -> None:
    vended = lam.vend()
    assert vended.body
    fingerprint = vended.body["fingerprint"]
    lam.stack.moto.calls.clear()

    bad_fingerprint = lam.report("not-a-fingerprint")
    bad_app = lam.report(fingerprint, app="bad.app")
    no_calls = list(lam.stack.moto.calls)
    unknown = lam.report(fingerprint, app="nosuchapp")
    stranger = lam.report(fingerprint, caller=OTHER_SESSION)
    wrong_scope = lam.report(fingerprint, scope="cx.admin")
    after = lam.vend()

    assert (bad_fingerprint.status, bad_fingerprint.error) == (400, "invalid_request")
    assert (bad_app.status, bad_app.error) == (400, "invalid_request")
    assert no_calls == []
    assert (unknown.status, unknown.error) == (404, "unknown_app")
    assert (stranger.status, stranger.error) == (403, "access_denied")
    assert (wrong_scope.status, wrong_scope.error) == (403, "invalid_scope")
    assert after.body and after.body["access_token"] == vended.body["access_token"]  # nothing was dropped


def report_from_another_container(lam: Lambda, fingerprint: str, tmp_path: Path) -> None:
    """Another container (its own process) gets the report."""
    event = lam.api_event("DELETE", extra_query={"fingerprint": fingerprint})
    result = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "devstack.cold_container", json.dumps(event), "0", str(result)],
                   env=child_env(lam.stack), check=True, capture_output=True, timeout=60)
    assert json.loads(result.read_text())["status"] == 204


def test_a_reported_token_is_still_served_from_another_containers_memory_while_it_trusts_it(
        lam: Lambda, settings_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings_env(MEMORY_TRUST_SECONDS=3600)
    first = lam.vend()  # this container now holds the token in memory
    assert first.body

    report_from_another_container(lam, first.body["fingerprint"], tmp_path)
    still_trusted = lam.vend()

    assert still_trusted.body and still_trusted.body["access_token"] == first.body["access_token"]  # the trade-off
    assert lam.stack.token_endpoint.request_count == 1


def test_once_its_trust_runs_out_a_container_stops_serving_a_token_reported_elsewhere(
        lam: Lambda, settings_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings_env(MEMORY_TRUST_SECONDS=0)  # every memory hit re-checks the table
    first = lam.vend()
    assert first.body

    report_from_another_container(lam, first.body["fingerprint"], tmp_path)
    rechecked = lam.vend()

    assert rechecked.body and rechecked.body["access_token"] != first.body["access_token"]
    assert lam.stack.token_endpoint.request_count == 2


def test_an_unchanged_table_entry_renews_memory_trust_without_unsealing(lam: Lambda, settings_env) -> None:  # type: ignore[no-untyped-def]
    settings_env(MEMORY_TRUST_SECONDS=0)
    lam.vend()
    lam.stack.moto.calls.clear()

    answer = lam.vend()

    assert answer.status == 200
    assert lam.stack.moto.calls == ["dynamodb.GetItem"]  # a fingerprint check, no KMS Decrypt
