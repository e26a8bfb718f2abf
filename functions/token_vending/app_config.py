"""Each app's client credentials and access policy, read from Secrets Manager.

Written by hand rather than with Powertools' SecretsProvider because the vend
needs what it does not give: the secret's VersionId (a new version clears
remembered failures) and bounded stale-if-error (keep the last good copy while
Secrets Manager is down, for SECRET_MAX_STALE_SECONDS).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .aws_errors import AwsFailure, classify, failure_name
from .errors import (
    AccessDenied,
    ConfigurationError,
    Dependency,
    DependencyUnavailable,
    InvalidScope,
    ServiceMisconfigured,
    UnknownApp,
)
from .observability import logger, record_degraded
from .policy import Caller, CallerPolicy, authorize, authorize_holder
from .settings import Settings

NOT_FOUND_CODES = {"ResourceNotFoundException", "InvalidRequestException"}  # absent, or scheduled for deletion
REFUSED_CODES = {"AccessDeniedException", "DecryptionFailure"}  # our role cannot read it: a deployment error
MAX_UNKNOWN_REMEMBERED = 4096  # app names are the caller's to choose: bound the memory


class TokenSharing(StrEnum):
    """The secret's optional `tokens` field: who shares a token of the app and scope set."""

    PER_CALLER = "per_caller"  # each holder has its own (the default): a leaked token names one caller
    SHARED = "shared"  # every allowed caller is given the same one


@dataclass(frozen=True)
class AppConfig:
    app: str
    client_id: str
    client_secret: str = field(repr=False)
    allowed_scopes: frozenset[str]
    allowed_callers: tuple[str, ...]
    version_id: str
    token_url: str = ""  # the endpoint these credentials are used with
    tokens: TokenSharing = TokenSharing.PER_CALLER

    def holder_for(self, caller: Caller) -> str:
        """Whose token this caller is given: its holder, or "" when the app shares its tokens."""
        return "" if self.tokens is TokenSharing.SHARED else caller.holder

    @cached_property  # parsed once per configuration: each vend only looks its caller up
    def callers(self) -> CallerPolicy:
        return CallerPolicy.parse(self.allowed_callers)

    def authorize(self, caller: Caller | None, scopes: tuple[str, ...]) -> None:
        """Raise unless this caller may have these scopes under this configuration's policy."""
        authorize(caller, self.callers, scopes, self.allowed_scopes)

    def refusal(self, holder: str, scopes: tuple[str, ...]) -> AccessDenied | InvalidScope | None:
        """Why the scheduled run may not mint or refresh this holder's token (no caller of it could be
        vended it), or None."""
        try:
            authorize_holder(holder, self.callers, scopes, self.allowed_scopes)
        except (AccessDenied, InvalidScope) as refusal:
            return refusal
        return None

    @cached_property  # one per configuration: it names every token cached for it
    def credential_id(self) -> str:
        """Short, one-way name of the client credentials and the endpoint they are used with: tokens
        are cached per credentials, so a rotation (or a new TOKEN_URL, sandbox to production) stops
        old tokens being served, while a policy-only change keeps them."""
        digest = hashlib.sha256(
            f"sangoma-credential\0{self.token_url}\0{self.client_id}\0{self.client_secret}".encode())
        return digest.hexdigest()[:16]


def basic_auth_problem(name: str, value: str) -> str | None:
    """Why `value` cannot be one half of an HTTP Basic credential (RFC 7617), naming only the field."""
    try:
        value.encode("latin-1")  # what requests (and most servers) use for Basic auth
    except UnicodeEncodeError:
        return f"{name} cannot be sent with Basic auth"
    if name == "client_id" and ":" in value:
        return "client_id cannot be sent with Basic auth (it holds a colon)"
    return None


def parse_app_config(app: str, secret_string: str | None, version_id: str, token_url: str = "") -> AppConfig:
    """Validate a secret's JSON. Problems name the field, never its value."""
    try:
        data: Any = json.loads(secret_string or "")
    except ValueError:
        raise ConfigurationError(app, "secret is not valid JSON") from None
    if not isinstance(data, dict):
        raise ConfigurationError(app, "secret is not a JSON object")
    for name in ("client_id", "client_secret"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise ConfigurationError(app, f"secret lacks a non-empty string {name}")
        problem = basic_auth_problem(name, data[name])
        if problem:
            raise ConfigurationError(app, problem)

    def string_list(name: str) -> list[str]:
        value = data.get(name) or []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigurationError(app, f"{name} must be a list of strings")
        return value

    try:
        tokens = TokenSharing(data.get("tokens", TokenSharing.PER_CALLER))
    except ValueError:
        raise ConfigurationError(app, 'tokens must be "per_caller" or "shared"') from None
    return AppConfig(
        app=app,
        client_id=data["client_id"],
        client_secret=data["client_secret"],
        allowed_scopes=frozenset(string_list("allowed_scopes")),
        allowed_callers=tuple(string_list("allowed_callers")),
        version_id=version_id,
        token_url=token_url,
        tokens=tokens,
    )


@dataclass
class _Cached:
    config: AppConfig
    fetched_at: float


class AppConfigStore:
    """Reads `${prefix}{app}` with an in-memory, time-limited cache and bounded stale-if-error. An app
    without a secret is remembered for UNKNOWN_APP_COOLDOWN_SECONDS: a flood of requests for it costs
    one read."""

    def __init__(self, client_factory: Callable[[], Any], settings: Settings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client_factory = client_factory
        self._prefix = settings.secret_prefix
        self._max_age = settings.secret_cache_seconds
        self._max_stale = settings.secret_max_stale_seconds
        self._token_url = settings.token_url  # part of each configuration's credential id
        self._unknown_for = settings.unknown_app_cooldown_seconds
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._unknown_until: dict[str, float] = {}  # app name -> until when it is answered unknown unread

    def get(self, app: str, *, force_fetch: bool = False, max_age: float | None = None) -> AppConfig:
        """The app's configuration, from memory while younger than `max_age` (SECRET_CACHE_SECONDS)."""
        if self._unknown_until.get(app, -math.inf) > self._clock():
            raise UnknownApp()
        cached = self._cache.get(app)
        max_age = self._max_age if max_age is None else min(max_age, self._max_age)
        if cached and not force_fetch and self._clock() - cached.fetched_at < max_age:
            return cached.config
        try:
            answer = self._client_factory().get_secret_value(SecretId=self._prefix + app)
        except ClientError as error:
            code = failure_name(error)
            if code in NOT_FOUND_CODES:
                self._remember_unknown(app)
                raise UnknownApp() from None
            if code in REFUSED_CODES:
                raise ConfigurationError(app, f"secrets manager refused to return the secret: {code}") from None
            return self._stale_or_raise(app, cached, error)
        except BotoCoreError as error:
            return self._stale_or_raise(app, cached, error)
        config = parse_app_config(app, answer.get("SecretString"), answer.get("VersionId", ""), self._token_url)
        self._cache[app] = _Cached(config, self._clock())
        return config

    def _remember_unknown(self, app: str) -> None:
        self._cache.pop(app, None)
        self._unknown_until.pop(app, None)  # re-inserted last: the oldest go first when the bound is reached
        self._unknown_until[app] = self._clock() + self._unknown_for
        if len(self._unknown_until) > MAX_UNKNOWN_REMEMBERED:
            del self._unknown_until[next(iter(self._unknown_until))]

    def _stale_or_raise(self, app: str, cached: _Cached | None, error: ClientError | BotoCoreError) -> AppConfig:
        """An outage: the copy in memory while young enough. A misconfiguration: a 500, whatever we hold."""
        if classify(error) is AwsFailure.MISCONFIGURATION:
            raise ServiceMisconfigured(Dependency.SECRETS_MANAGER, failure_name(error)) from None
        reason = failure_name(error)
        record_degraded(Dependency.SECRETS_MANAGER)
        if cached is None:
            logger.warning("secrets manager unavailable, no copy in memory", extra={"app": app, "reason": reason})
            raise DependencyUnavailable("the application's configuration cannot be read now", retry_after=5)
        age = self._clock() - cached.fetched_at
        if age > self._max_stale:
            # The policy may have removed this caller since: do not honour a copy this old.
            logger.warning("secrets manager unavailable, the copy in memory is too old to use",
                           extra={"app": app, "reason": reason, "age_seconds": int(age)})
            raise DependencyUnavailable("the application's configuration cannot be read now", retry_after=5)
        logger.warning("secrets manager unavailable, using the copy in memory",
                       extra={"app": app, "reason": reason, "age_seconds": int(age)})
        return cached.config
