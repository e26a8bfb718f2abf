"""A cached token is sealed with KMS under an encryption context that binds what decides serving it (app,
scope, credential id, holder, expiry, renewal, token type, minting time): an entry whose metadata was edited,
or that was sealed under another context or with another key, does not unseal. That is a cache miss (fetch
within the budget, overwrite), never a served token, and not "KMS is down"; when KMS itself fails, the lease
and the mint budget still apply and only storing is skipped."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from devstack.stack import KEY_ALIAS, TABLE_NAME

from .conftest import CALLER_HOLDER, SCOPES, Lambda


def token_item(lam: Lambda, scope: str = SCOPES) -> dict[str, Any]:
    [item] = [item for item in lam.stack.table_items()
              if item["pk"]["S"].startswith("token#") and item["scope"]["S"] == scope]
    return item


def put_item(lam: Lambda, item: dict[str, Any]) -> None:
    lam.stack.client("dynamodb").put_item(TableName=TABLE_NAME, Item=item)


def assert_refetched_not_degraded(lam: Lambda, before: dict[str, Any], logs: str) -> None:
    lam.new_container()
    again = lam.vend().body  # the overwritten entry now serves a cold container
    assert again and again["access_token"] != before["access_token"]
    assert lam.stack.token_endpoint.request_count == 2
    assert token_item(lam)["fingerprint"]["S"] == again["fingerprint"]
    assert "Degraded_kms" not in logs and "DegradedDependency" not in logs
    assert '"UnsealableEntries":1' in logs


@pytest.mark.parametrize(("field", "edit"), [
    ("expires_at", lambda value: {"N": str(int(value["N"]) + 365 * 86_400)}),
    ("renewal_blocked", lambda value: {"BOOL": not value["BOOL"]}),
    ("token_type", lambda value: {"S": "mac"}),
])
def test_an_entry_whose_metadata_was_edited_is_a_miss(lam: Lambda, captured_logs: Any, field: str, edit: Any) -> None:
    before = lam.vend().body
    assert before
    item = token_item(lam)
    item[field] = edit(item[field])
    put_item(lam, item)
    lam.new_container()

    answer = lam.vend()

    assert answer.status == 200 and answer.body
    assert answer.body["access_token"] != before["access_token"]
    assert_refetched_not_degraded(lam, before, captured_logs())


def test_a_sealed_token_moved_to_another_key_does_not_unseal(lam: Lambda, captured_logs: Any) -> None:
    lam.vend(scope="cx.agent-calls")
    before = lam.vend().body
    assert before
    other, target = token_item(lam, "cx.agent-calls"), token_item(lam)
    target["sealed_token"] = other["sealed_token"]
    target["fingerprint"] = other["fingerprint"]
    put_item(lam, target)
    lam.new_container()

    answer = lam.vend()

    assert answer.body and answer.body["scope"] == SCOPES
    assert answer.body["fingerprint"] != other["fingerprint"]["S"]
    assert lam.stack.token_endpoint.request_count == 3


def test_an_entry_sealed_before_the_context_bound_its_metadata_is_a_miss_once(lam: Lambda, captured_logs: Any) -> None:
    before = lam.vend().body
    assert before
    item = token_item(lam)
    # As earlier versions sealed it: the context named only app and scope.
    item["sealed_token"] = {"B": lam.stack.client("kms").encrypt(
        KeyId=KEY_ALIAS, Plaintext=before["access_token"].encode(),
        EncryptionContext={"app": "demo", "scope": SCOPES})["CiphertextBlob"]}
    put_item(lam, item)
    lam.new_container()

    answer = lam.vend()

    assert answer.body and answer.body["access_token"] != before["access_token"]
    assert_refetched_not_degraded(lam, before, captured_logs())


def test_what_is_sealed_names_every_field_that_decides_serving(lam: Lambda) -> None:
    token = lam.vend().body
    assert token
    item = token_item(lam)
    kms = lam.stack.client("kms")
    context = {"app": "demo", "scope": SCOPES, "credential_id": item["credential_id"]["S"], "holder": CALLER_HOLDER,
               "expires_at": item["expires_at"]["N"], "renewal_blocked": "false", "token_type": "bearer",
               "stored_at": item["stored_at"]["N"]}

    plaintext = kms.decrypt(CiphertextBlob=item["sealed_token"]["B"], EncryptionContext=context)["Plaintext"]

    assert plaintext.decode() == token["access_token"]
    for name in context:
        partial = {key: value for key, value in context.items() if key != name}
        with pytest.raises(kms.exceptions.InvalidCiphertextException):
            kms.decrypt(CiphertextBlob=item["sealed_token"]["B"], EncryptionContext=partial)
    assert json.dumps(item, default=str).count(token["access_token"]) == 0


# -- what a table writer can do, and what KMS failing does ---------------------------------------------------


def mint_count(lam: Lambda) -> int:
    """The app's count of upstream token requests this hour."""
    return sum(int(item["count"]["N"]) for item in lam.stack.table_items()
               if item["pk"]["S"].startswith("mints#demo#") and "#caller#" not in item["pk"]["S"])


def test_a_token_sealed_with_another_key_is_a_miss_fetched_within_the_budget_and_overwritten(
        lam: Lambda, settings_env: Any, captured_logs: Any) -> None:
    settings_env(MAX_MINTS_PER_APP_PER_HOUR=2)
    before = lam.vend().body
    assert before
    item = token_item(lam)
    kms = lam.stack.client("kms")
    their_key = kms.create_key(Description="someone else's")["KeyMetadata"]["KeyId"]
    context = {"app": "demo", "scope": SCOPES, "credential_id": item["credential_id"]["S"], "holder": CALLER_HOLDER,
               "expires_at": item["expires_at"]["N"], "renewal_blocked": "false", "token_type": "bearer",
               "stored_at": item["stored_at"]["N"]}
    # Someone with write access to the table only: their own key, the context copied.
    item["sealed_token"] = {"B": kms.encrypt(KeyId=their_key, Plaintext=b"sgm_planted-token",
                                             EncryptionContext=context)["CiphertextBlob"]}
    put_item(lam, item)

    answers = []
    for _ in range(7):  # seven cold containers
        lam.new_container()
        answers.append(lam.vend())

    assert [answer.status for answer in answers] == [200] * 7
    assert {answer.body["access_token"] for answer in answers if answer.body} != {before["access_token"]}
    assert lam.stack.token_endpoint.request_count == 2  # the first vend, and one fetch for the planted entry
    assert mint_count(lam) == 2  # counted, within the budget
    assert token_item(lam)["fingerprint"]["S"] == answers[-1].body["fingerprint"]  # type: ignore[index]
    logs = captured_logs()
    assert logs.count('"UnsealableEntries":1') == 1 and "Degraded_kms" not in logs


@pytest.mark.usefixtures("budget_hour")
def test_with_kms_unavailable_the_lease_and_the_budget_still_apply_and_nothing_is_stored(
        lam: Lambda, settings_env: Any, captured_logs: Any) -> None:
    settings_env(MAX_MINTS_PER_APP_PER_HOUR=2)

    answers = []
    with lam.stack.moto.outage("kms"):  # KMS answers 503, as in an outage
        for _ in range(3):  # three cold containers, each fetching: nothing can be stored
            lam.new_container()
            answers.append(lam.vend())

    assert [answer.status for answer in answers] == [200, 200, 429]
    assert answers[2].error == "mint_limit_reached"
    assert mint_count(lam) == 2
    assert not [item for item in lam.stack.table_items() if item["pk"]["S"].startswith("token#")]
    assert "dynamodb.PutItem" in lam.stack.moto.calls  # the lease
    logs = captured_logs()
    assert '"Degraded_kms":1' in logs and "UnsealableEntries" not in logs


def test_a_minting_time_moved_ahead_makes_no_report_wait_and_does_not_unseal(lam: Lambda, settings_env: Any) -> None:
    settings_env(MIN_REPORT_AGE_SECONDS=60)
    before = lam.vend().body
    assert before
    item = token_item(lam)
    item["stored_at"] = {"N": str(float(item["stored_at"]["N"]) + 10 * 365 * 86_400)}  # ten years ahead
    put_item(lam, item)
    lam.new_container()  # no copy in memory says when it was minted

    reported = lam.report(before["fingerprint"])
    after = lam.vend()

    assert reported.status == 204  # no 429 slow_down with a Retry-After of ten years
    assert not [item for item in lam.stack.table_items() if item["pk"]["S"].startswith("token#")
                and item["fingerprint"]["S"] == before["fingerprint"]]
    assert after.body and after.body["access_token"] != before["access_token"]


def test_a_remembered_failure_planted_in_the_table_holds_off_an_hour_at_most(lam: Lambda) -> None:
    secret = lam.stack.client("secretsmanager").get_secret_value(SecretId="sangoma/token-vending/demo")
    lam.stack.client("dynamodb").put_item(TableName=TABLE_NAME, Item={
        "pk": {"S": f"cooldown#demo#{secret['VersionId']}"}, "kind": {"S": "cooldown"},
        "cooldown": {"S": "throttled"}, "until": {"N": str(time.time() + 10 * 365 * 86_400)}, "streak": {"N": "0"}})

    answer = lam.vend()

    assert (answer.status, answer.error) == (503, "upstream_unavailable")
    assert 0 < int(answer.headers["Retry-After"]) <= 3600
