"""The function's configuration: environment variables read once into one typed object.

Each setting is declared once, as a field of `Settings`: its environment variable is the
field's name in capitals, its type and default are the field's, and its metadata says what it
means and which template.yaml parameter or resource sets it (none: the template leaves the
code default alone).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

DAY = 86_400


def setting(default: Any, doc: str, template: str | None = None) -> Any:
    """A setting's declaration: default, meaning, and the template parameter (or resource) that sets it."""
    return field(default=default, metadata={"doc": doc, "template": template})


@dataclass(frozen=True)
class Settings:
    token_table_name: str = setting("", "The DynamoDB table of cached tokens, leases and counters.", "TokenTable")
    token_kms_key_id: str = setting("", "The KMS key (id, ARN or alias) that seals cached tokens.", "TokenKeyAlias")
    secret_prefix: str = setting(
        "sangoma/token-vending/", "Secrets Manager name prefix; an app's secret is {prefix}{app}.", "SecretPrefix")
    token_url: str = setting("https://auth.sangoma.com/oauth/token", "Sangoma's OAuth2 token endpoint.", "TokenUrl")
    min_ttl_seconds: int = setting(300, "A cached token is served only while it has more than this left.",
                                   "MinTtlSeconds")
    secret_cache_seconds: int = setting(300, "How long an app's secret is kept in a container's memory.",
                                        "SecretCacheSeconds")
    memory_trust_seconds: int = setting(
        60, "How long a token in memory is served before re-checking the table (bounds revocation lag).",
        "MemoryTrustSeconds")
    lease_seconds: int = setting(
        12, "How long a single-flight lease is held: longer than a whole fetch may take.")
    lease_wait_seconds: float = setting(
        14.0, "How long a vend waits for another container's fetch (longer than a lease: a dead holder's lease "
              "is taken over), then answers 503 token_in_progress.")
    token_connect_timeout_seconds: float = setting(2.0, "Connect timeout of one request to the token endpoint.")
    token_read_timeout_seconds: float = setting(2.5, "Read timeout of one request to the token endpoint.")
    token_max_retries: int = setting(2, "Retries of a failed request to the token endpoint.")
    token_fetch_deadline_seconds: float = setting(10.0, "One deadline for a whole fetch, retries included.")
    invalid_client_cooldown_seconds: int = setting(
        10, "After the endpoint rejects an app's credentials, answer the rejection without asking for this long.")
    upstream_failure_cooldown_seconds: int = setting(
        5, "After a 5xx without Retry-After, a timeout or an unreachable endpoint: hold the app off this long, "
           "doubling while failures continue (at most 60 s).")
    refused_cooldown_seconds: int = setting(
        60, "After another 4xx or an unusable answer: answer the same 502 for that token, without asking, this long.")
    unknown_app_cooldown_seconds: int = setting(
        30, "How long a container remembers that an app has no secret (a flood of requests costs one read).")
    max_token_lifetime_seconds: int = setting(2 * 365 * DAY, "An expires_in beyond this is capped.")
    default_token_lifetime_seconds: int = setting(
        3600, "How long a token lives when the endpoint's answer has no expires_in (RFC 6749 only recommends it).",
        "DefaultTokenLifetimeSeconds")
    refresh_before_seconds: int = setting(
        7 * DAY, "The scheduled run refreshes a cached token with less than this left (per-key jitter above it).",
        "RefreshBeforeSeconds")
    min_report_age_seconds: int = setting(
        60, "A token minted less than this ago cannot be reported rejected (429 slow_down).", "MinReportAgeSeconds")
    max_mints_per_app_per_hour: int = setting(
        100, "Upstream token requests per app per clock hour, across all containers (429 mint_limit_reached).",
        "MaxMintsPerAppPerHour")
    max_mints_per_caller_per_hour: int = setting(
        20, "Upstream token requests a caller's vends may cause per app per clock hour, counted per holder in "
            "either token mode (429 mint_limit_reached for that caller only).", "MaxMintsPerCallerPerHour")
    secret_max_stale_seconds: int = setting(
        3600, "Stale-if-error for app secrets ends this long after the last good read.")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Every setting from its variable; a blank or absent one keeps the default."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for declared in fields(cls):
            raw = env.get(declared.name.upper(), "").strip()
            if raw:
                values[declared.name] = _convert(declared.name.upper(), raw, declared.type)
        return cls(**values)


def _convert(name: str, raw: str, kind: Any) -> str | int | float:
    if kind in (str, "str"):
        return raw
    value = float(raw)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite, non-negative number")
    return int(value) if kind in (int, "int") else value
