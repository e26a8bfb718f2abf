"""Protecting the token endpoint: remembered failures and the per-app mint budget.

Before a fetch, `admit` raises when the endpoint must not be asked now: a failure
this container remembers (cooldowns.py) for the key or the app, one that another
container shared through the table, or the app's mint budget for this clock hour
being spent (MAX_MINTS_PER_APP_PER_HOUR, counted atomically in the table).
After a fetch, `failed` remembers what the failure calls for and `succeeded`
ends a failure streak:

- 429/503 with Retry-After: that long (at most an hour); the app, in memory and the table.
- 5xx without Retry-After, a timeout, an unreachable endpoint: UPSTREAM_FAILURE_COOLDOWN_SECONDS,
  doubling while failures continue, at most 60 s; the app, in memory and the table.
- invalid_client, after a re-read of the secret: INVALID_CLIENT_COOLDOWN_SECONDS; the app, in
  memory and the table.
- another 4xx, an unusable answer: 60 s, answering the same 502; the key, in memory.

The table is shared best-effort: when DynamoDB fails, this container's memory
still holds off, and the budget is not counted (the vend goes on, degraded).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from .app_config import AppConfig
from .cooldowns import Cooldowns, app_scope, key_scope
from .errors import (
    CredentialsRejected,
    MintLimitReached,
    StoreUnavailable,
    UpstreamError,
    UpstreamThrottled,
    UpstreamUnavailable,
    VendingError,
)
from .observability import logger, record_mint_limit_reached, record_store_degraded
from .settings import Settings
from .token_store import HOUR, Cooldown, TokenStore
from .tokens import TokenKey

THROTTLED = "the token endpoint asked us to wait"
FAILING = "the token endpoint is failing; trying again shortly"
REJECTED = "the token endpoint rejected the application's credentials"
REFUSED_SECONDS = 60  # another 4xx or an unusable answer: the same 502, without asking, for this long
MAX_FAILURE_COOLDOWN_SECONDS = 60


class UpstreamGuard:
    def __init__(self, settings: Settings, store: TokenStore, cooldowns: Cooldowns, *,
                 streaks: dict[str, Cooldown] | None = None, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._store = store
        self._cooldowns = cooldowns
        self._clock = clock
        # app scope -> its last transient failure (kept by the container, like the cooldowns)
        self._streaks: dict[str, Cooldown] = {} if streaks is None else streaks

    def credentials_rejected(self, config: AppConfig) -> bool:
        """Is the app held off because the endpoint rejected its credentials?"""
        return self._cooldowns.reason(app_scope(config.app, config.version_id)) == REJECTED

    def admit(self, config: AppConfig, key: TokenKey, *, shared: bool) -> None:
        """Raise unless the endpoint may be asked for this key now. `shared`: also consult (and spend)
        what every container shares through the table; False when the table is known to be down."""
        scope = app_scope(config.app, config.version_id)
        self._cooldowns.check(key_scope(key))
        self._cooldowns.check(scope)
        if not shared:
            return
        try:
            held = self._store.cooldown(config.app, config.version_id)
            if held:
                self._adopt(scope, held)
                self._cooldowns.check(scope)
            count = self._store.count_mint(config.app, self._settings.max_mints_per_app_per_hour)
        except StoreUnavailable as error:
            record_store_degraded(error.dependency, str(error))
            return
        if count is None:
            record_mint_limit_reached()
            logger.warning("mint limit reached for this hour", extra={
                "app": config.app, "limit": self._settings.max_mints_per_app_per_hour})
            left = HOUR - self._clock() % HOUR
            raise MintLimitReached(retry_after=max(1, math.ceil(left)))

    def failed(self, config: AppConfig, key: TokenKey, error: VendingError) -> None:
        """Remember what a failed fetch calls for (credentials rejections: see `rejected`)."""
        if isinstance(error, UpstreamThrottled):
            self._remember(config, Cooldown(self._clock() + (error.retry_after or 0), THROTTLED, 0))
        elif isinstance(error, UpstreamUnavailable):
            streak = self._next_streak(app_scope(config.app, config.version_id))
            seconds = min(self._settings.upstream_failure_cooldown_seconds * 2 ** (streak - 1),
                          MAX_FAILURE_COOLDOWN_SECONDS)
            self._remember(config, Cooldown(self._clock() + seconds, FAILING, streak))
        elif isinstance(error, UpstreamError) and not isinstance(error, CredentialsRejected):
            self._cooldowns.remember(key_scope(key), REFUSED_SECONDS, error.description, unavailable=False)

    def rejected(self, config: AppConfig) -> None:
        """The endpoint rejected the credentials, and a fresh read of the secret did not change them."""
        self._remember(config, Cooldown(self._clock() + self._settings.invalid_client_cooldown_seconds,
                                        REJECTED, 0))

    def succeeded(self, config: AppConfig) -> None:
        """A fetch worked: a streak of failures is over."""
        if self._streaks.pop(app_scope(config.app, config.version_id), None) is None:
            return
        try:
            self._store.forget_cooldown(config.app, config.version_id)
        except StoreUnavailable as error:
            record_store_degraded(error.dependency, str(error))

    def _next_streak(self, scope: str) -> int:
        previous = self._streaks.get(scope)
        # Failures continue when one comes soon after the last hold-off ended.
        continues = previous is not None and self._clock() - previous.until < MAX_FAILURE_COOLDOWN_SECONDS
        return previous.streak + 1 if previous is not None and continues else 1

    def _adopt(self, scope: str, held: Cooldown) -> None:
        """Take on a failure another container remembered."""
        left = held.until - self._clock()
        self._cooldowns.remember(scope, left, held.reason)
        if held.streak:
            self._streaks[scope] = held

    def _remember(self, config: AppConfig, cooldown: Cooldown) -> None:
        scope = app_scope(config.app, config.version_id)
        self._cooldowns.remember(scope, cooldown.until - self._clock(), cooldown.reason)
        if cooldown.streak:
            self._streaks[scope] = cooldown
        try:
            self._store.remember_cooldown(config.app, config.version_id, cooldown)
        except StoreUnavailable as error:
            record_store_degraded(error.dependency, str(error))  # this container still remembers
