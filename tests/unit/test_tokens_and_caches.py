"""Cached tokens, their fingerprints, the container's memory cache, remembered failures and settings."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

import pytest
from token_vending.cooldowns import Cooldowns, app_scope, key_scope
from token_vending.errors import UpstreamError, UpstreamUnavailable
from token_vending.memory_cache import MemoryCache
from token_vending.request_input import parse_fingerprint
from token_vending.settings import Settings
from token_vending.tokens import CachedToken, TokenKey, fingerprint

ACCESS_TOKEN = "sgm_7YbQx-this-is-the-token"
NOW = 1_700_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def token(access_token: str = ACCESS_TOKEN, expires_at: float = NOW + 3600, renewal_blocked: bool = False,
          scope: str = "cx.agent-calls") -> CachedToken:
    return CachedToken(access_token=access_token, token_type="bearer", scope=scope, expires_at=expires_at,
                       renewal_blocked=renewal_blocked)


def key(app: str = "demo", scope: str = "cx.agent-calls", credential_id: str = "c" * 16) -> TokenKey:
    return TokenKey(app, scope, credential_id)


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


def test_one_key_per_app_scope_set_and_credentials() -> None:
    base = key()
    assert base == key()
    assert base.table_key == key().table_key
    variants = [key(app="other"), key(scope="cx.agent-calls cx.queue-calls"), key(credential_id="d" * 16)]
    for variant in variants:
        assert variant != base
        assert variant.table_key != base.table_key
    assert len({v.table_key for v in variants}) == len(variants)


def test_lease_key_is_distinct_from_the_token_key() -> None:
    assert key().lease_key != key().table_key
    assert key().lease_key != key(app="other").lease_key


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


def test_seconds_left() -> None:
    assert token(expires_at=NOW + 42.5).seconds_left(NOW) == 42.5
    assert token(expires_at=NOW).seconds_left(NOW + 5) == -5


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


# --- memory cache -------------------------------------------------------------------------------------------


def test_memory_cache_miss() -> None:
    cache = MemoryCache(trust_seconds=60, clock=Clock())
    assert cache.get(key()) is None
    assert len(cache) == 0


def test_memory_cache_trusts_an_entry_for_trust_seconds() -> None:
    clock = Clock()
    cache = MemoryCache(trust_seconds=60, clock=clock)
    cached = token()
    cache.put(key(), cached)
    assert cache.get(key()) == (cached, True)
    clock.advance(59.9)
    assert cache.get(key()) == (cached, True)
    clock.advance(0.1)
    assert cache.get(key()) == (cached, False)  # still there, but re-check the table first
    clock.advance(3600)
    assert cache.get(key()) == (cached, False)


def test_memory_cache_renew_trust() -> None:
    clock = Clock()
    cache = MemoryCache(trust_seconds=60, clock=clock)
    cache.put(key(), token())
    clock.advance(61)
    cache.renew_trust(key())
    assert cache.get(key()) == (token(), True)
    clock.advance(60)
    assert cache.get(key()) == (token(), False)


def test_renew_trust_of_a_missing_entry_adds_nothing() -> None:
    cache = MemoryCache(trust_seconds=60, clock=Clock())
    cache.renew_trust(key())
    assert cache.get(key()) is None


def test_memory_cache_put_replaces_and_resets_trust() -> None:
    clock = Clock()
    cache = MemoryCache(trust_seconds=60, clock=clock)
    cache.put(key(), token("old"))
    clock.advance(120)
    cache.put(key(), token("new"))
    assert cache.get(key()) == (token("new"), True)
    assert len(cache) == 1


def test_memory_cache_keeps_keys_apart() -> None:
    cache = MemoryCache(trust_seconds=60, clock=Clock())
    cache.put(key(), token("a"))
    cache.put(key(scope="cx.queue-calls"), token("b"))
    cache.put(key(credential_id="d" * 16), token("c"))
    assert cache.get(key()) == (token("a"), True)
    assert cache.get(key(scope="cx.queue-calls")) == (token("b"), True)
    assert cache.get(key(credential_id="d" * 16)) == (token("c"), True)


def test_drop_without_fingerprint_drops_whatever_is_there() -> None:
    cache = MemoryCache(trust_seconds=60, clock=Clock())
    cache.put(key(), token())
    assert cache.drop(key()) is True
    assert cache.get(key()) is None
    assert cache.drop(key()) is False


def test_drop_with_the_matching_fingerprint() -> None:
    cache = MemoryCache(trust_seconds=60, clock=Clock())
    cache.put(key(), token())
    assert cache.drop(key(), fingerprint(ACCESS_TOKEN)) is True
    assert cache.get(key()) is None


def test_drop_with_another_fingerprint_keeps_the_newer_token() -> None:
    cache = MemoryCache(trust_seconds=60, clock=Clock())
    cache.put(key(), token("new-token"))
    assert cache.drop(key(), fingerprint("old-token")) is False
    assert cache.get(key()) == (token("new-token"), True)


def test_drop_of_a_missing_key() -> None:
    cache = MemoryCache(trust_seconds=60, clock=Clock())
    cache.put(key(), token())
    assert cache.drop(key(app="other"), fingerprint(ACCESS_TOKEN)) is False
    assert len(cache) == 1


def test_memory_cache_is_bounded_and_evicts_least_recently_used() -> None:
    cache = MemoryCache(trust_seconds=60, max_entries=3, clock=Clock())
    keys = [key(app=f"app{i}") for i in range(5)]
    for k in keys[:3]:
        cache.put(k, token(k.app))
    cache.get(keys[0])  # used: app1 is now the least recently used
    cache.put(keys[3], token("app3"))
    assert len(cache) == 3
    assert cache.get(keys[1]) is None
    assert cache.get(keys[0]) is not None
    cache.put(keys[2], token("app2-again"))  # a put also counts as use
    cache.put(keys[4], token("app4"))
    assert cache.get(keys[3]) is None
    assert {k.app for k in keys if cache.get(k)} == {"app0", "app2", "app4"}


def test_memory_cache_never_grows_past_its_bound() -> None:
    cache = MemoryCache(trust_seconds=60, max_entries=10, clock=Clock())
    for i in range(100):
        cache.put(key(app=f"app{i}"), token(f"t{i}"))
        assert len(cache) <= 10
    assert cache.get(key(app="app99")) is not None
    assert cache.get(key(app="app89")) is None


# --- cooldowns ----------------------------------------------------------------------------------------------


def test_no_cooldown_no_error() -> None:
    Cooldowns(clock=Clock()).check(app_scope("demo", "v1"))


def test_cooldown_answers_upstream_unavailable_with_the_retry_after_left_rounded_up() -> None:
    clock = Clock()
    cooldowns = Cooldowns(clock=clock)
    cooldowns.remember(app_scope("demo", "v1"), 30, "the token endpoint asked us to wait")
    with pytest.raises(UpstreamUnavailable) as caught:
        cooldowns.check(app_scope("demo", "v1"))
    assert caught.value.status == 503
    assert caught.value.code == "upstream_unavailable"
    assert caught.value.retry_after == 30
    assert caught.value.description == "the token endpoint asked us to wait"
    clock.advance(10.5)
    with pytest.raises(UpstreamUnavailable) as caught:
        cooldowns.check(app_scope("demo", "v1"))
    assert caught.value.retry_after == 20  # 19.5 left: rounded up, never down
    clock.advance(19.4)
    with pytest.raises(UpstreamUnavailable) as caught:
        cooldowns.check(app_scope("demo", "v1"))
    assert caught.value.retry_after == 1  # 0.1 left


@pytest.mark.parametrize(("seconds", "expected"), [(0.01, 1), (0.5, 1), (1, 1), (1.0001, 2), (2.1, 3), (5, 5)])
def test_retry_after_rounding(seconds: float, expected: int) -> None:
    cooldowns = Cooldowns(clock=Clock())
    cooldowns.remember(app_scope("demo", "v1"), seconds, "wait")
    with pytest.raises(UpstreamUnavailable) as caught:
        cooldowns.check(app_scope("demo", "v1"))
    assert caught.value.retry_after == expected


def test_cooldown_ends() -> None:
    clock = Clock()
    cooldowns = Cooldowns(clock=clock)
    cooldowns.remember(app_scope("demo", "v1"), 5, "wait")
    clock.advance(5)
    cooldowns.check(app_scope("demo", "v1"))
    clock.advance(-1)  # once over, it stays over
    cooldowns.check(app_scope("demo", "v1"))


def test_cooldown_is_per_app_and_per_secret_version() -> None:
    cooldowns = Cooldowns(clock=Clock())
    cooldowns.remember(app_scope("demo", "v1"), 60, "wait")
    cooldowns.check(app_scope("demo", "v2"))  # a new secret version starts clean
    cooldowns.check(app_scope("other", "v1"))
    with pytest.raises(UpstreamUnavailable):
        cooldowns.check(app_scope("demo", "v1"))


def test_a_refused_key_answers_the_same_502_without_retry_after_and_only_for_that_key() -> None:
    clock = Clock()
    cooldowns = Cooldowns(clock=clock)
    key = TokenKey("demo", "cx.a", "cred")
    cooldowns.remember(key_scope(key), 60, "the token endpoint refused the request (400)", unavailable=False)
    with pytest.raises(UpstreamError) as caught:
        cooldowns.check(key_scope(key))
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (502, "upstream_error", None)
    assert caught.value.description == "the token endpoint refused the request (400)"
    cooldowns.check(key_scope(TokenKey("demo", "cx.b", "cred")))  # another key of the app is not held
    cooldowns.check(app_scope("demo", "v1"))
    clock.advance(60)
    cooldowns.check(key_scope(key))


@pytest.mark.parametrize("seconds", [0, -1, -0.5])
def test_no_cooldown_for_zero_or_negative_seconds(seconds: float) -> None:
    cooldowns = Cooldowns(clock=Clock())
    cooldowns.remember(app_scope("demo", "v1"), seconds, "wait")
    cooldowns.check(app_scope("demo", "v1"))


# --- settings -----------------------------------------------------------------------------------------------

ENV_NAMES = [
    "TOKEN_TABLE_NAME", "TOKEN_KMS_KEY_ID", "SECRET_PREFIX", "TOKEN_URL", "MIN_TTL_SECONDS", "SECRET_CACHE_SECONDS",
    "MEMORY_TRUST_SECONDS", "LEASE_SECONDS", "LEASE_WAIT_SECONDS", "TOKEN_CONNECT_TIMEOUT_SECONDS",
    "TOKEN_READ_TIMEOUT_SECONDS", "TOKEN_MAX_RETRIES", "INVALID_CLIENT_COOLDOWN_SECONDS",
    "MAX_TOKEN_LIFETIME_SECONDS", "REFRESH_BEFORE_SECONDS", "TOKEN_FETCH_DEADLINE_SECONDS", "MIN_REPORT_AGE_SECONDS",
    "MAX_MINTS_PER_APP_PER_HOUR", "UPSTREAM_FAILURE_COOLDOWN_SECONDS", "SECRET_MAX_STALE_SECONDS",
]
NUMERIC_ENV_NAMES = ENV_NAMES[4:]


def test_settings_defaults() -> None:
    settings = Settings.from_env({"TOKEN_TABLE_NAME": "tokens", "TOKEN_KMS_KEY_ID": "alias/tokens"})
    assert settings.token_table_name == "tokens"
    assert settings.token_kms_key_id == "alias/tokens"
    assert settings.min_ttl_seconds == 300
    assert settings.secret_cache_seconds == 300
    assert settings.secret_prefix == "sangoma/token-vending/"
    assert settings.token_url == "https://auth.sangoma.com/oauth/token"
    assert settings.memory_trust_seconds == 60
    assert settings.min_report_age_seconds == 60
    assert settings.max_mints_per_app_per_hour == 100
    assert settings.upstream_failure_cooldown_seconds == 5
    assert settings.secret_max_stale_seconds == 3600
    assert settings.token_fetch_deadline_seconds == 10


def test_settings_defaults_keep_a_vend_within_api_gateway_limits() -> None:
    settings = Settings.from_env({})
    assert 0 < settings.token_connect_timeout_seconds < 29
    assert 0 < settings.token_read_timeout_seconds < 29
    assert 0 < settings.lease_wait_seconds < 29
    # A lease outlasts a whole fetch (so no second container fetches meanwhile), and a waiter outlasts a
    # lease (so a dead holder's is taken over); waiting and then fetching still ends before API Gateway's 29 s.
    assert settings.token_fetch_deadline_seconds < settings.lease_seconds < settings.lease_wait_seconds
    assert settings.lease_wait_seconds + settings.token_fetch_deadline_seconds < 29
    assert settings.max_token_lifetime_seconds == 2 * 365 * 86_400


def test_settings_blank_values_mean_the_default() -> None:
    settings = Settings.from_env({"MIN_TTL_SECONDS": "", "SECRET_CACHE_SECONDS": "  "})
    assert settings.min_ttl_seconds == 300
    assert settings.secret_cache_seconds == 300


def test_settings_overrides() -> None:
    settings = Settings.from_env({
        "TOKEN_TABLE_NAME": "t", "TOKEN_KMS_KEY_ID": "k", "SECRET_PREFIX": "p/", "TOKEN_URL": "http://127.0.0.1:1/t",
        "MIN_TTL_SECONDS": "60", "SECRET_CACHE_SECONDS": " 5 ", "MEMORY_TRUST_SECONDS": "0", "LEASE_SECONDS": "3",
        "LEASE_WAIT_SECONDS": "1.5", "TOKEN_CONNECT_TIMEOUT_SECONDS": "0.5", "TOKEN_READ_TIMEOUT_SECONDS": "0.75",
        "TOKEN_MAX_RETRIES": "0", "INVALID_CLIENT_COOLDOWN_SECONDS": "2", "MAX_TOKEN_LIFETIME_SECONDS": "86400",
        "REFRESH_BEFORE_SECONDS": "3600",
    })
    assert settings == Settings(
        token_table_name="t", token_kms_key_id="k", secret_prefix="p/", token_url="http://127.0.0.1:1/t",
        min_ttl_seconds=60, secret_cache_seconds=5, memory_trust_seconds=0, lease_seconds=3,
        lease_wait_seconds=1.5, token_connect_timeout_seconds=0.5, token_read_timeout_seconds=0.75,
        token_max_retries=0, invalid_client_cooldown_seconds=2, max_token_lifetime_seconds=86_400,
        refresh_before_seconds=3600,
    )


def test_settings_read_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MIN_TTL_SECONDS", "120")
    monkeypatch.setenv("TOKEN_TABLE_NAME", "from-env")
    settings = Settings.from_env()
    assert settings.min_ttl_seconds == 120
    assert settings.token_table_name == "from-env"
    assert settings.secret_cache_seconds == 300


@pytest.mark.parametrize("name", NUMERIC_ENV_NAMES)
@pytest.mark.parametrize("value", ["-1", "-0.5", "-300"])
def test_settings_reject_negative_numbers(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize("name", ["MIN_TTL_SECONDS", "SECRET_CACHE_SECONDS", "LEASE_WAIT_SECONDS"])
@pytest.mark.parametrize("value", ["abc", "5s", "1,5"])
def test_settings_reject_non_numbers(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        Settings.from_env({name: value})


@pytest.mark.parametrize("name", ["MIN_TTL_SECONDS", "SECRET_CACHE_SECONDS", "MAX_TOKEN_LIFETIME_SECONDS"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_settings_reject_non_finite_whole_second_values(name: str, value: str) -> None:
    with pytest.raises((ValueError, OverflowError)):
        Settings.from_env({name: value})


@pytest.mark.parametrize("name", ["LEASE_WAIT_SECONDS", "TOKEN_CONNECT_TIMEOUT_SECONDS",
                                  "TOKEN_READ_TIMEOUT_SECONDS"])
@pytest.mark.parametrize("value", ["nan", "inf", "-nan"])
def test_settings_reject_non_finite_fractional_values(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        Settings.from_env({name: value})


def test_every_variable_settings_read_is_one_a_container_watches() -> None:
    from collections.abc import Iterator, Mapping

    from token_vending.container import ENVIRONMENT

    read: list[str] = []

    class Recording(Mapping[str, str]):
        def __getitem__(self, name: str) -> str:
            raise KeyError(name)

        def get(self, name: str, default: object = None) -> object:  # type: ignore[override]
            read.append(name)
            return default

        def __iter__(self) -> Iterator[str]:
            return iter(())

        def __len__(self) -> int:
            return 0

    Settings.from_env(Recording())

    assert read
    assert set(read) <= set(ENVIRONMENT)


def test_a_changed_environment_starts_a_new_container(monkeypatch: pytest.MonkeyPatch) -> None:
    from token_vending import container

    monkeypatch.setenv("MIN_TTL_SECONDS", "300")
    first = container.current()
    assert container.current() is first
    monkeypatch.setenv("MIN_TTL_SECONDS", "10")

    second = container.current()

    assert second is not first
    assert second.settings.min_ttl_seconds == 10


def test_pointing_at_another_stack_forgets_what_the_container_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    from token_vending import container

    monkeypatch.setenv("TOKEN_URL", "http://127.0.0.1:1/oauth/token")
    first = container.current()
    monkeypatch.setenv("MIN_TTL_SECONDS", "7")
    retuned = container.current()
    monkeypatch.setenv("TOKEN_URL", "http://127.0.0.1:2/oauth/token")
    other_stack = container.current()

    assert retuned is not first and retuned.memory is first.memory
    assert other_stack.memory is not first.memory
