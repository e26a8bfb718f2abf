"""The function's configuration: environment variables read once into one typed object."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

DAY = 86_400
SETTING_VARIABLES = (
    "TOKEN_TABLE_NAME", "TOKEN_KMS_KEY_ID", "SECRET_PREFIX", "TOKEN_URL", "MIN_TTL_SECONDS", "SECRET_CACHE_SECONDS",
    "MEMORY_TRUST_SECONDS", "LEASE_SECONDS", "LEASE_WAIT_SECONDS", "TOKEN_CONNECT_TIMEOUT_SECONDS",
    "TOKEN_READ_TIMEOUT_SECONDS", "TOKEN_MAX_RETRIES", "INVALID_CLIENT_COOLDOWN_SECONDS",
    "MAX_TOKEN_LIFETIME_SECONDS", "REFRESH_BEFORE_SECONDS", "TOKEN_FETCH_DEADLINE_SECONDS", "MIN_REPORT_AGE_SECONDS",
    "MAX_MINTS_PER_APP_PER_HOUR", "UPSTREAM_FAILURE_COOLDOWN_SECONDS", "SECRET_MAX_STALE_SECONDS",
)


@dataclass(frozen=True)
class Settings:
    token_table_name: str
    token_kms_key_id: str
    secret_prefix: str = "sangoma/token-vending/"
    token_url: str = "https://auth.sangoma.com/oauth/token"
    # A cached token is served only while it has more than this left.
    min_ttl_seconds: int = 300
    # How long an app's secret is kept in memory.
    secret_cache_seconds: int = 300
    # How long a memory-cached token is trusted before re-checking the table
    # (bounds how long another container's revoked token can still be served).
    memory_trust_seconds: int = 60
    # Single-flight lease: how long a holder keeps it (longer than a whole fetch may take), and how long
    # others wait for its token (longer than a lease: a dead holder's is taken over, not answered 503).
    lease_seconds: int = 12
    lease_wait_seconds: float = 14.0
    # Token endpoint: timeouts per attempt, retries, and one deadline for the whole fetch, retries included.
    token_connect_timeout_seconds: float = 2.0
    token_read_timeout_seconds: float = 2.5
    token_max_retries: int = 2
    token_fetch_deadline_seconds: float = 10.0
    # After the endpoint rejects an app's credentials, answer from memory for this long.
    invalid_client_cooldown_seconds: int = 10
    # expires_in beyond this is not trusted; it is capped.
    max_token_lifetime_seconds: int = 2 * 365 * DAY
    # The scheduled run refreshes cached tokens with less than this left.
    refresh_before_seconds: int = 7 * DAY
    # A token minted less than this ago cannot be reported rejected (429 slow_down): no mint loops.
    min_report_age_seconds: int = 60
    # Upstream token requests per app per clock hour, across all containers (429 mint_limit_reached past it).
    max_mints_per_app_per_hour: int = 100
    # After a 5xx without Retry-After, a timeout or an unreachable endpoint: hold off the app this long,
    # doubling while failures continue (at most UPSTREAM_FAILURE_MAX_COOLDOWN_SECONDS).
    upstream_failure_cooldown_seconds: int = 5
    # Stale-if-error for app secrets ends this long after the last good read.
    secret_max_stale_seconds: int = 3600

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def number(name: str, default: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            value = float(raw)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite, non-negative number")
            return value

        defaults = cls(token_table_name="", token_kms_key_id="")
        return cls(
            token_table_name=env.get("TOKEN_TABLE_NAME", ""),
            token_kms_key_id=env.get("TOKEN_KMS_KEY_ID", ""),
            secret_prefix=env.get("SECRET_PREFIX", defaults.secret_prefix),
            token_url=env.get("TOKEN_URL", defaults.token_url),
            min_ttl_seconds=int(number("MIN_TTL_SECONDS", defaults.min_ttl_seconds)),
            secret_cache_seconds=int(number("SECRET_CACHE_SECONDS", defaults.secret_cache_seconds)),
            memory_trust_seconds=int(number("MEMORY_TRUST_SECONDS", defaults.memory_trust_seconds)),
            lease_seconds=int(number("LEASE_SECONDS", defaults.lease_seconds)),
            lease_wait_seconds=number("LEASE_WAIT_SECONDS", defaults.lease_wait_seconds),
            token_connect_timeout_seconds=number(
                "TOKEN_CONNECT_TIMEOUT_SECONDS", defaults.token_connect_timeout_seconds
            ),
            token_read_timeout_seconds=number("TOKEN_READ_TIMEOUT_SECONDS", defaults.token_read_timeout_seconds),
            token_max_retries=int(number("TOKEN_MAX_RETRIES", defaults.token_max_retries)),
            invalid_client_cooldown_seconds=int(
                number("INVALID_CLIENT_COOLDOWN_SECONDS", defaults.invalid_client_cooldown_seconds)
            ),
            max_token_lifetime_seconds=int(number("MAX_TOKEN_LIFETIME_SECONDS", defaults.max_token_lifetime_seconds)),
            refresh_before_seconds=int(number("REFRESH_BEFORE_SECONDS", defaults.refresh_before_seconds)),
            token_fetch_deadline_seconds=number("TOKEN_FETCH_DEADLINE_SECONDS", defaults.token_fetch_deadline_seconds),
            min_report_age_seconds=int(number("MIN_REPORT_AGE_SECONDS", defaults.min_report_age_seconds)),
            max_mints_per_app_per_hour=int(number("MAX_MINTS_PER_APP_PER_HOUR", defaults.max_mints_per_app_per_hour)),
            upstream_failure_cooldown_seconds=int(
                number("UPSTREAM_FAILURE_COOLDOWN_SECONDS", defaults.upstream_failure_cooldown_seconds)
            ),
            secret_max_stale_seconds=int(number("SECRET_MAX_STALE_SECONDS", defaults.secret_max_stale_seconds)),
        )
