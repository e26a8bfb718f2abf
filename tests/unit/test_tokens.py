"""Cached tokens: their fingerprints, keys, whether they may be served, and the vend's answer."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime

import pytest
from token_vending.request_input import MAX_SCOPES, parse_fingerprint
from token_vending.tokens import TokenKey, fingerprint

from .conftest import ACCESS_TOKEN, NOW, key, token

# --- fingerprint --------------------------------------------------------------------------------------------


def test_fingerprint_is_the_sha256_prefix() -> None:
    assert fingerprint(ACCESS_TOKEN) == hashlib.sha256(ACCESS_TOKEN.encode()).hexdigest()[:16]


@pytest.mark.parametrize("access_token", ["a", ACCESS_TOKEN, "x" * 5000, "t\u00f6ken"])
def test_fingerprint_is_16_lowercase_hex_accepted_by_the_report_api(access_token: str) -> None:
    value = fingerprint(access_token)
    assert re.fullmatch(r"[0-9a-f]{16}", value)
    assert parse_fingerprint(value) == value


def test_fingerprints_differ_per_token() -> None:
    assert fingerprint("token-one") != fingerprint("token-two")
    assert token("token-one").fingerprint == fingerprint("token-one")


def test_cached_token_repr_never_contains_the_token() -> None:
    cached = token()
    assert ACCESS_TOKEN not in repr(cached)
    assert ACCESS_TOKEN not in str(cached)


# --- token keys ---------------------------------------------------------------------------------------------


HOLDER = "arn:aws:sts::111122223333:assumed-role/billing-service"


def test_one_token_and_one_lease_per_app_scope_set_credentials_and_holder() -> None:
    variants = [key(), key(app="other"), key(scope="cx.agent-calls cx.queue-calls"), key(credential_id="d" * 16),
                key()._replace(holder=HOLDER), key()._replace(holder=HOLDER + "-2")]
    items = [item for variant in variants for item in (variant.table_key, variant.lease_key)]

    assert len(set(items)) == 2 * len(variants)  # no two keys share an item, and no token item is a lease
    assert (key().table_key, key().lease_key) == (key().table_key, key().lease_key)  # the same key, the same items


def test_a_key_of_the_longest_scopes_and_holder_still_fits_a_dynamodb_partition_key() -> None:
    # The most a request may carry (MAX_SCOPES scopes of 256 characters) and a long role ARN: the item names them
    # by a digest, under DynamoDB's 2048-byte limit on a partition key.
    longest = TokenKey("a" * 64, " ".join(f"cx.{index:02}" + "s" * 250 for index in range(MAX_SCOPES)), "c" * 16,
                       f"arn:aws:sts::111122223333:assumed-role/{'r' * 64}")

    assert len(longest.table_key.encode()) <= 2048 and len(longest.lease_key.encode()) <= 2048
    assert longest.table_key != longest._replace(holder=HOLDER).table_key


# --- servable -----------------------------------------------------------------------------------------------


def test_servable_only_with_more_than_min_ttl_left() -> None:
    cached = token(expires_at=NOW + 300)
    assert cached.servable(NOW - 0.001, 300)
    assert not cached.servable(NOW, 300)  # exactly MIN_TTL_SECONDS left: not served
    assert not cached.servable(NOW + 1, 300)
    assert not cached.servable(NOW + 300, 300)
    assert not cached.servable(NOW + 10_000, 300)


def test_servable_with_zero_min_ttl_until_expiry() -> None:
    cached = token(expires_at=NOW + 10)
    assert cached.servable(NOW + 9.999, 0)
    assert not cached.servable(NOW + 10, 0)


def test_renewal_blocked_token_is_served_until_expiry_but_never_after() -> None:
    cached = token(expires_at=NOW + 300, renewal_blocked=True)
    assert cached.servable(NOW, 300)
    assert cached.servable(NOW + 299, 300)
    assert cached.servable(NOW + 299.999, 300)
    assert not cached.servable(NOW + 300, 300)
    assert not cached.servable(NOW + 301, 300)
    assert not cached.servable(NOW + 86_400, 300)


def test_whole_seconds_left_are_never_rounded_up_nor_below_zero() -> None:
    assert token(expires_at=NOW + 42.9).whole_seconds_left(NOW) == 42
    assert token(expires_at=NOW).whole_seconds_left(NOW + 5) == 0


# --- expires_at ---------------------------------------------------------------------------------------------


def test_expires_at_rfc3339_is_utc_with_z() -> None:
    assert token(expires_at=0).expires_at_rfc3339 == "1970-01-01T00:00:00Z"
    assert token(expires_at=NOW).expires_at_rfc3339 == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize("expires_at", [NOW + 0.2, NOW + 0.999, NOW + 24_304_413.5])
def test_expires_at_rfc3339_is_whole_seconds_and_never_later_than_expiry(expires_at: float) -> None:
    text = token(expires_at=expires_at).expires_at_rfc3339
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", text)
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    assert expires_at - 1 < parsed <= expires_at


# --- the answer ---------------------------------------------------------------------------------------------


def test_the_answer_carries_the_token_its_seconds_left_expiry_and_fingerprint() -> None:
    cached = token(expires_at=NOW + 3600.5)

    answer = json.loads(cached.answer(3600))

    assert answer == {"access_token": ACCESS_TOKEN, "token_type": "bearer", "scope": "cx.agent-calls",
                      "expires_in": 3600, "expires_at": "2023-11-14T23:13:20Z",
                      "fingerprint": fingerprint(ACCESS_TOKEN)}
