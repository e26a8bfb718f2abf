"""A cached token is sealed with KMS under an encryption context that binds what decides serving it (app,
scope, credential id, expiry, renewal, token type): an entry whose metadata was edited, or that was sealed
under another context, does not unseal. That is a cache miss (fetch, overwrite), never a served token, and
not "KMS is down"."""

from __future__ import annotations

import json
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
               "expires_at": item["expires_at"]["N"], "renewal_blocked": "false", "token_type": "bearer"}

    plaintext = kms.decrypt(CiphertextBlob=item["sealed_token"]["B"], EncryptionContext=context)["Plaintext"]

    assert plaintext.decode() == token["access_token"]
    for name in context:
        partial = {key: value for key, value in context.items() if key != name}
        with pytest.raises(kms.exceptions.InvalidCiphertextException):
            kms.decrypt(CiphertextBlob=item["sealed_token"]["B"], EncryptionContext=partial)
    assert json.dumps(item, default=str).count(token["access_token"]) == 0
