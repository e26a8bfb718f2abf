"""TokenStore against a real moto server: token items and their one parser, the seal that binds what decides
serving, a reported token's paid place, leases, and what a failure of DynamoDB or KMS surfaces as: an outage
(StoreUnavailable, which a request notes once in StoreHealth) or a misconfiguration (ServiceMisconfigured)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from token_vending.errors import Dependency, ServiceMisconfigured, StoreUnavailable
from token_vending.observability import take_metrics
from token_vending.request_input import MAX_SCOPES, parse_token_request
from token_vending.store_health import StoreHealth
from token_vending.token_store import (
    KMS_CONTEXT_LIMIT,
    EntryRejected,
    PaidReplacement,
    TokenStore,
    parse_token_item,
    sealing_context,
)
from token_vending.tokens import CachedToken, TokenKey, fingerprint

from devstack.local_aws import KEY_ALIAS, TABLE_NAME

from .conftest import START, Aws

KEY = TokenKey("demo", "cx.agent-calls", "0123456789abcdef", "arn:aws:sts::111122223333:assumed-role/billing")
ACCESS_TOKEN = "sgm_stored-token"


def token(access_token: str = ACCESS_TOKEN, expires_at: float = START + 86_400, **options: Any) -> CachedToken:
    return CachedToken(access_token=access_token, token_type="bearer", scope=KEY.scope, expires_at=expires_at,
                       minted_at=START, **options)


def edit(aws: Aws, pk: str, **attributes: dict[str, Any]) -> None:
    item = aws.stack.client("dynamodb").get_item(TableName=TABLE_NAME, Key={"pk": {"S": pk}})["Item"]
    aws.stack.client("dynamodb").put_item(TableName=TABLE_NAME, Item={**item, **attributes})


def test_a_stored_token_comes_back_as_it_was_put(aws: Aws) -> None:
    store = aws.store()
    store.put(KEY, token(), "v1")

    stored = store.get(KEY)

    assert stored is not None
    assert (stored.app, stored.scope, stored.credential_id, stored.secret_version) == ("demo", KEY.scope,
                                                                                     KEY.credential_id, "v1")
    assert (stored.fingerprint, stored.expires_at, stored.minted_at) == (fingerprint(ACCESS_TOKEN), START + 86_400,
                                                                         START)
    assert store.unseal(KEY, stored) == token()
    assert ACCESS_TOKEN not in json.dumps(aws.stack.table_items(), default=str)  # only sealed


def test_an_absent_entry_is_none(aws: Aws) -> None:
    assert aws.store().get(KEY) is None


@pytest.mark.parametrize("attribute", ["fingerprint", "expires_at", "stored_at", "app"])
def test_the_one_parser_rejects_an_item_missing_what_decides_serving(aws: Aws, attribute: str) -> None:
    store = aws.store()
    store.put(KEY, token(), "v1")
    [item] = aws.items("token#")
    del item[attribute]

    with pytest.raises(EntryRejected):
        parse_token_item(item)


@pytest.mark.parametrize(("attribute", "value"), [
    ("expires_at", {"N": str(int(START) + 10 * 365 * 86_400)}),  # served for ten years
    ("renewal_blocked", {"BOOL": True}),  # served past MIN_TTL_SECONDS
    ("token_type", {"S": "mac"}),
    ("fingerprint", {"S": "0000000000000000"}),  # names another token
])
def test_an_entry_whose_metadata_was_edited_does_not_unseal(aws: Aws, attribute: str, value: dict[str, Any]) -> None:
    store = aws.store()
    store.put(KEY, token(), "v1")
    edit(aws, KEY.table_key, **{attribute: value})

    stored = store.get(KEY)

    assert stored is not None
    with pytest.raises(EntryRejected):
        store.unseal(KEY, stored)


def test_an_entry_moved_under_another_key_does_not_unseal(aws: Aws) -> None:
    store = aws.store()
    store.put(KEY, token(), "v1")
    other = TokenKey("demo", "cx.queue-calls", KEY.credential_id)
    [item] = aws.items("token#")
    aws.stack.client("dynamodb").put_item(TableName=TABLE_NAME, Item={**item, "pk": {"S": other.table_key}})

    stored = store.get(other)

    assert stored is not None
    with pytest.raises(EntryRejected):
        store.unseal(other, stored)


def test_the_sealing_context_names_every_field_that_decides_serving() -> None:
    assert sealing_context(KEY, token(renewal_blocked=True)) == {
        "app": "demo", "scope": KEY.scope, "credential_id": KEY.credential_id, "holder": KEY.holder,
        "expires_at": str(int(START) + 86_400), "renewal_blocked": "true", "token_type": "bearer",
        "stored_at": f"{START:.3f}"}
    assert sealing_context(KEY._replace(holder=""), token())["holder"] == "shared"  # KMS takes no empty value


def test_listing_reads_every_token_entry_without_its_sealed_token_and_skips_what_does_not_parse(aws: Aws) -> None:
    store = aws.store()
    store.put(KEY, token(), "v1")
    store.put(TokenKey("other", "cx.queue-calls", KEY.credential_id), token("sgm_other"), "v7")
    store.try_acquire_lease(KEY, "me", 10)
    aws.guard_table().count_mint("demo", 5)
    edit(aws, TokenKey("other", "cx.queue-calls", KEY.credential_id).table_key, expires_at={"S": "soon"})

    listed = list(store.entries())

    assert [(entry.app, entry.fingerprint, entry.sealed) for entry in listed] == [
        ("demo", fingerprint(ACCESS_TOKEN), b"")]


def test_a_report_puts_a_paid_place_only_while_the_entry_holds_that_token_minted_before_the_cutoff(
        aws: Aws) -> None:
    store = aws.store()
    store.put(KEY, token(), "v1")
    stored = store.get(KEY)
    assert stored is not None and not isinstance(stored, PaidReplacement)
    another = replace(stored, fingerprint=fingerprint("sgm_another"))

    assert not store.replace_reported(KEY, another, minted_before=START + 60, paid_by="reporter")
    assert not store.replace_reported(KEY, stored, minted_before=START - 1, paid_by="reporter")
    assert store.replace_reported(KEY, stored, minted_before=START, paid_by="arn:reporter")

    assert store.get(KEY) == PaidReplacement("arn:reporter")
    assert list(store.entries()) == []  # no token to list or refresh
    [marker] = aws.items("token#")
    assert int(marker["ttl"]["N"]) > stored.expires_at  # it lasts as long as the token would have
    store.put(KEY, token("sgm_replacement"), "v1")  # the replacement overwrites it
    replaced = store.get(KEY)
    assert isinstance(replaced, type(stored)) and replaced.fingerprint == fingerprint("sgm_replacement")


def test_a_lease_is_one_holders_until_released_or_run_out(aws: Aws) -> None:
    store = aws.store()
    assert store.try_acquire_lease(KEY, "first", 12) is None

    assert store.try_acquire_lease(KEY, "second", 12) == START + 12  # when to try again
    store.release_lease(KEY, "second")  # not its lease: nothing happens
    assert store.try_acquire_lease(KEY, "third", 12) == START + 12
    store.release_lease(KEY, "first")
    assert store.try_acquire_lease(KEY, "third", 12) is None
    aws.clock.advance(12.001)
    assert store.try_acquire_lease(KEY, "fourth", 12) is None  # the third's ran out: taken over


def test_an_outage_is_store_unavailable_naming_the_service_and_the_error_only(aws: Aws) -> None:
    store = aws.store()
    store.put(KEY, token(), "v1")
    stored = store.get(KEY)
    assert stored is not None

    with aws.stack.moto.outage("dynamodb"), pytest.raises(StoreUnavailable) as table_down:
        store.get(KEY)
    with aws.stack.moto.outage("kms"), pytest.raises(StoreUnavailable) as kms_down:
        store.unseal(KEY, stored)

    assert (table_down.value.dependency, str(table_down.value)) == ("dynamodb", "ServiceUnavailable")
    assert (kms_down.value.dependency, str(kms_down.value)) == ("kms", "ServiceUnavailable")


def test_store_health_records_each_failed_service_once(aws: Aws) -> None:
    store = aws.store()
    health = StoreHealth()
    take_metrics()

    with aws.stack.moto.outage("dynamodb"):
        for _ in range(3):
            try:
                store.get(KEY)
            except StoreUnavailable as outage:
                health.note(outage)

    assert not health.table_answers and health.kms_answers
    assert take_metrics() == ({"Degraded_dynamodb": 1, "DegradedDependency": 1}, {})


@pytest.mark.parametrize(("table", "key_id", "code"), [
    ("no-such-table", KEY_ALIAS, "ResourceNotFoundException"),  # DynamoDB: no such table
    ("", KEY_ALIAS, "ParamValidationError"),  # botocore refuses an empty table name before any request
    (TABLE_NAME, "alias/no-such-key", "NotFoundException"),  # KMS: no such key
])
def test_a_misconfiguration_is_not_an_outage_but_names_the_service_and_the_error_code(
        aws: Aws, table: str, key_id: str, code: str) -> None:
    dynamodb, kms = aws.stack.client("dynamodb"), aws.stack.client("kms")
    store = TokenStore(lambda: dynamodb, lambda: kms, table, key_id, clock=aws.clock)

    with pytest.raises(ServiceMisconfigured) as refused:
        store.put(KEY, token(), "v1")

    assert refused.value.error_code == code
    assert refused.value.dependency is (Dependency.KMS if key_id != KEY_ALIAS else Dependency.DYNAMODB)
    assert (refused.value.status, refused.value.code) == (500, "internal_error")


def test_the_largest_request_the_function_accepts_seals_within_the_kms_context_limit() -> None:
    # 32 scopes of 256 characters, a long holder ARN (a user on a long path), the longest app name.
    scopes = [f"{n:02d}" + "s" * 254 for n in range(MAX_SCOPES)]
    request = parse_token_request("a" * 64, scopes)
    holder = "arn:aws-us-gov:iam::111122223333:user/" + "p/" * 250 + "u" * 64
    key = TokenKey(request.app, request.scope, "0123456789abcdef", holder)
    longest = CachedToken(access_token="t", token_type="b" * 64, scope=request.scope, expires_at=10**11,
                          renewal_blocked=True, minted_at=10**11)

    context = sealing_context(key, longest)

    assert sum(len(name) + len(value) for name, value in context.items()) <= KMS_CONTEXT_LIMIT
    assert context["scope"] != sealing_context(key._replace(scope=request.scope[:-1] + "x"), longest)["scope"]
