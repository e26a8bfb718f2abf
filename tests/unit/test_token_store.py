"""TokenStore against a real moto server: token items and their one parser, the seal that binds what decides
serving, leases, remembered failures, mint counters, and StoreHealth, where a request records an outage once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from token_vending.errors import StoreUnavailable
from token_vending.observability import take_metrics
from token_vending.token_store import EntryRejected, StoreHealth, parse_token_item, sealing_context
from token_vending.tokens import CachedToken, TokenKey, fingerprint
from token_vending.upstream_guard import Cooldown, CooldownKind

from devstack.local_aws import TABLE_NAME

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


def test_a_report_drops_the_entry_only_while_it_holds_that_token_minted_before_the_cutoff(aws: Aws) -> None:
    store = aws.store()
    store.put(KEY, token(), "v1")

    assert not store.delete_if_fingerprint(KEY, fingerprint("sgm_another"), minted_before=START + 60)
    assert not store.delete_if_fingerprint(KEY, fingerprint(ACCESS_TOKEN), minted_before=START - 1)
    assert store.delete_if_fingerprint(KEY, fingerprint(ACCESS_TOKEN), minted_before=START)
    assert store.get(KEY) is None


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


def test_a_remembered_failure_round_trips_and_is_forgotten(aws: Aws) -> None:
    store = aws.guard_table()
    cooldown = Cooldown(CooldownKind.FAILING, START + 20, streak=3)
    store.remember_cooldown("demo", "v1", cooldown)

    assert store.cooldown("demo", "v1") == cooldown
    assert store.cooldown("demo", "v2") is None
    store.forget_cooldown("demo", "v1")
    assert store.cooldown("demo", "v1") is None


def test_mint_counters_count_to_their_limit_per_budget_and_clock_hour(aws: Aws) -> None:
    store = aws.guard_table()

    assert [store.count_mint("demo", 2) for _ in range(3)] == [1, 2, None]
    assert store.count_mint("other", 2) == 1
    aws.clock.advance(3600)
    assert store.count_mint("demo", 2) == 1
    [counter] = [item for item in aws.items("mints#demo#") if item["count"]["N"] == "1"]
    assert int(counter["ttl"]["N"]) > aws.clock()  # DynamoDB removes it after the hour


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


def test_store_health_records_each_failed_service_once_and_goes_on(aws: Aws) -> None:
    store = aws.store()
    health = StoreHealth()
    take_metrics()

    with aws.stack.moto.outage("dynamodb"):
        for _ in range(3):
            with health.tolerate():
                store.get(KEY)
                pytest.fail("the block ends at the failure")

    assert not health.table_answers and health.kms_answers
    assert take_metrics() == ({"Degraded_dynamodb": 1, "DegradedDependency": 1}, {})
