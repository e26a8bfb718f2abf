"""The function's configuration: environment variables read once into one typed object.

Each setting is declared once, as a field of `Settings`: its environment variable is the
field's name in capitals, its type and default are the field's, and its metadata says what it
means and which template.yaml parameter or resource sets it (none: the template leaves the
code default alone).
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from .errors import ConfigurationError

DAY = 86_400
API_GATEWAY_TIMEOUT_SECONDS = 29  # API Gateway's integration timeout: a vend answers within it or not at all
LOCAL_HOSTS = frozenset({"localhost", "host.docker.internal"})
HTTPS_ONLY_RULE = "TOKEN_URL must be an https URL (plain http only to a loopback host or host.docker.internal)"


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

    def problems(self) -> list[str]:
        """What is wrong with these settings, each naming the setting and why (never its value)."""
        return [rule.why for rule in RULES if not rule.holds(self)]

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


class InvalidSettings(ConfigurationError):
    """The function's settings cannot work: every request answers 500, and nothing is called."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(None, "; ".join(problems))
        self.problems = problems


def load(env: Mapping[str, str] | None = None) -> Settings:
    """The settings a container runs with: read from the environment, then checked (InvalidSettings)."""
    try:
        settings = Settings.from_env(env)
    except ValueError as error:
        raise InvalidSettings([str(error)]) from None
    problems = settings.problems()
    if problems:
        raise InvalidSettings(problems)
    return settings


class Rule(NamedTuple):
    holds: Callable[[Settings], bool]
    why: str


# What the code relies on. A container whose settings break one answers every request 500.
RULES = (
    Rule(lambda s: bool(s.token_table_name), "TOKEN_TABLE_NAME is not set: tokens, leases and budgets live there"),
    Rule(lambda s: bool(s.token_kms_key_id), "TOKEN_KMS_KEY_ID is not set: cached tokens are sealed with it"),
    Rule(lambda s: bool(s.secret_prefix), "SECRET_PREFIX is not set: every app's secret is named by it"),
    Rule(lambda s: url_problem(s.token_url) is None, HTTPS_ONLY_RULE),
    Rule(lambda s: s.lease_seconds > 0, "LEASE_SECONDS must be positive"),
    Rule(lambda s: s.token_fetch_deadline_seconds < s.lease_seconds,
         "TOKEN_FETCH_DEADLINE_SECONDS must be less than LEASE_SECONDS: a fetch ends before its lease runs out, "
         "or another container fetches the same token"),
    Rule(lambda s: s.lease_wait_seconds + s.token_fetch_deadline_seconds < API_GATEWAY_TIMEOUT_SECONDS,
         "LEASE_WAIT_SECONDS plus TOKEN_FETCH_DEADLINE_SECONDS must stay under API Gateway's 29 s integration "
         "timeout: a vend that waits its longest, then fetches, must still answer"),
    Rule(lambda s: s.min_ttl_seconds < s.refresh_before_seconds,
         "MIN_TTL_SECONDS must be less than REFRESH_BEFORE_SECONDS: the scheduled run renews tokens before vends "
         "stop serving them"),
    Rule(lambda s: s.min_ttl_seconds < s.default_token_lifetime_seconds <= s.max_token_lifetime_seconds,
         "DEFAULT_TOKEN_LIFETIME_SECONDS must exceed MIN_TTL_SECONDS (else such a token is never served from a "
         "cache) and not exceed MAX_TOKEN_LIFETIME_SECONDS"),
    Rule(lambda s: s.max_mints_per_app_per_hour >= 1 and s.max_mints_per_caller_per_hour >= 1,
         "MAX_MINTS_PER_APP_PER_HOUR and MAX_MINTS_PER_CALLER_PER_HOUR must be at least 1"),
)


def url_problem(url: str) -> str | None:
    """Why the token endpoint URL is refused, or None: it must be https, except to a local host."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.scheme == "https" and host:
        return None
    if parts.scheme == "http" and host and (host in LOCAL_HOSTS or _is_loopback(host)):
        return None
    return HTTPS_ONLY_RULE


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _convert(name: str, raw: str, kind: Any) -> str | int | float:
    if kind in (str, "str"):
        return raw
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number") from None  # the value is not repeated: it may be anything
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite, non-negative number")
    return int(value) if kind in (int, "int") else value
