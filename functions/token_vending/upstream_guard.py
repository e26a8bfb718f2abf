"""Remembered failures and the mint budget: what keeps a vend from asking again what just failed.

Every remembered failure is one `Cooldown`: a kind, an `until` on the wall clock (it crosses
containers through the table) and, for a failing endpoint, a streak. While one lasts, a vend
that would ask again answers the error its kind maps to instead. The rules, one per kind:

| kind                 | after                              | holds off  | for                               | shared |
|----------------------|------------------------------------|------------|-----------------------------------|--------|
| throttled            | 429/503 with Retry-After           | app secret | the Retry-After (at most 3600 s)  | yes    |
| failing              | 5xx without Retry-After, timeout   | app secret | UPSTREAM_FAILURE_COOLDOWN_SECONDS | yes    |
| credentials_rejected | invalid_client, secret re-read     | app secret | INVALID_CLIENT_COOLDOWN_SECONDS   | yes    |
| refused              | another 4xx, an unusable answer    | token key  | REFUSED_COOLDOWN_SECONDS          | no     |
| unknown_app          | no secret for the app              | app name   | UNKNOWN_APP_COOLDOWN_SECONDS      | no     |
| mint_limit           | a mint budget spent (below)        | app        | the rest of the clock hour        | no     |

- "failing" covers an unreachable endpoint too; its time doubles with each failure that comes
  within 60 s of the last hold-off's end (the streak), at most 60 s. A success ends the streak.
- "app secret" is the app and its secret's version: a new version starts clean.
- "shared": every container holds off too, through the table (best-effort: when DynamoDB fails,
  this container's memory still holds off). No remembered failure lasts more than an hour,
  whoever wrote it.
- The mint budgets count each fetch before it is made, atomically in the table: first the calling
  holder's (MAX_MINTS_PER_CALLER_PER_HOUR, per app and holder, whatever the app's token mode; the
  scheduled run has none), then the app's (MAX_MINTS_PER_APP_PER_HOUR). A caller past its own budget
  is held off alone and spends none of the app's. When DynamoDB fails nothing is counted (the vend goes
  on, degraded). A spent budget is remembered per container.
- Each answers what it stands for: 503 upstream_unavailable with the Retry-After left (the
  first three), the same 502 (refused), 404 (unknown_app), 429 mint_limit_reached.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

from .app_config import AppConfig
from .errors import (
    CredentialsRejected,
    MintLimitReached,
    UnknownApp,
    UpstreamError,
    UpstreamThrottled,
    UpstreamUnavailable,
    VendingError,
)
from .observability import logger, record_mint_limit_reached
from .settings import Settings
from .tokens import TokenKey

if TYPE_CHECKING:
    from .token_store import GuardTable, StoreHealth

HOUR = 3600
MAX_COOLDOWN_SECONDS = 3600  # no remembered failure holds off longer, whoever wrote it
MAX_FAILURE_COOLDOWN_SECONDS = 60  # the doubling stops here: an hour-long outage is retried every minute
MAX_REMEMBERED = 4096  # token keys are many (scope sets): bound the memory


class CooldownKind(StrEnum):
    THROTTLED = "throttled"
    FAILING = "failing"
    CREDENTIALS_REJECTED = "credentials_rejected"
    REFUSED = "refused"
    UNKNOWN_APP = "unknown_app"
    MINT_LIMIT = "mint_limit"


UNAVAILABLE_DESCRIPTIONS = {
    CooldownKind.THROTTLED: "the token endpoint asked us to wait",
    CooldownKind.FAILING: "the token endpoint is failing; trying again shortly",
    CooldownKind.CREDENTIALS_REJECTED: "the token endpoint rejected the application's credentials",
}


@dataclass(frozen=True)
class Cooldown:
    kind: CooldownKind
    until: float  # epoch seconds
    streak: int = 0  # consecutive failures of a failing endpoint
    detail: str = ""  # refused: the 502's description, answered again; mint_limit: whose budget (app | caller)

    def error(self, now: float) -> VendingError:
        """What a vend answers while it lasts."""
        retry_after = max(1, math.ceil(self.until - now))
        if self.kind is CooldownKind.REFUSED:
            return UpstreamError(self.detail)
        if self.kind is CooldownKind.UNKNOWN_APP:
            return UnknownApp()
        if self.kind is CooldownKind.MINT_LIMIT:
            return MintLimitReached(self.detail or "app", retry_after=retry_after)
        return UpstreamUnavailable(UNAVAILABLE_DESCRIPTIONS[self.kind], retry_after=retry_after)


class UpstreamGuard:
    def __init__(self, settings: Settings, table: GuardTable, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._table = table
        self._clock = clock
        self._remembered: dict[str, Cooldown] = {}  # by what it holds off (see the _scope functions)

    def check_app(self, app: str) -> None:
        """Raise UnknownApp while the app is remembered to have no secret."""
        self._check(_unknown_scope(app))

    def unknown_app(self, app: str) -> None:
        self._remember(_unknown_scope(app), CooldownKind.UNKNOWN_APP, self._settings.unknown_app_cooldown_seconds)

    def credentials_rejected(self, config: AppConfig) -> bool:
        """Is the app held off because the endpoint rejected its credentials?"""
        held = self._remembered.get(_app_scope(config))
        return held is not None and held.kind is CooldownKind.CREDENTIALS_REJECTED and held.until > self._clock()

    def admit(self, config: AppConfig, key: TokenKey, caller: str | None, health: StoreHealth) -> None:
        """Raise unless the endpoint may be asked for this key now; spend the calling holder's budget
        (`caller`; None for the scheduled run, which has none) and the app's on it. While the table
        answers, also consult what every container shares through it."""
        budgets = [Budget.of_app(config.app, self._settings.max_mints_per_app_per_hour)]
        if caller is not None:  # the caller's first: a caller past its own budget spends none of the app's
            budgets.insert(0, Budget.of_caller(config.app, caller, self._settings.max_mints_per_caller_per_hour))
        for scope in (_key_scope(key), _app_scope(config), *(budget.scope for budget in budgets)):
            self._check(scope)
        if not health.table_answers:
            return
        with health.tolerate():
            shared = self._table.cooldown(config.app, config.version_id)
            if shared:
                self._adopt(_app_scope(config), shared)
            for budget in budgets:
                self._spend(budget)

    def failed(self, config: AppConfig, key: TokenKey, error: VendingError, health: StoreHealth) -> None:
        """Remember what a failed fetch calls for (credentials rejections: see `rejected`)."""
        if isinstance(error, UpstreamThrottled):
            self._remember_for_app(config, CooldownKind.THROTTLED, error.retry_after or 0, health)
        elif isinstance(error, UpstreamUnavailable):
            streak = self._next_streak(_app_scope(config))
            seconds = min(self._settings.upstream_failure_cooldown_seconds * 2 ** (streak - 1),
                          MAX_FAILURE_COOLDOWN_SECONDS)
            self._remember_for_app(config, CooldownKind.FAILING, seconds, health, streak=streak)
        elif isinstance(error, UpstreamError) and not isinstance(error, CredentialsRejected):
            self._remember(_key_scope(key), CooldownKind.REFUSED, self._settings.refused_cooldown_seconds,
                           detail=error.description)

    def rejected(self, config: AppConfig, health: StoreHealth) -> None:
        """The endpoint rejected the credentials, and a fresh read of the secret did not change them."""
        self._remember_for_app(config, CooldownKind.CREDENTIALS_REJECTED,
                               self._settings.invalid_client_cooldown_seconds, health)

    def succeeded(self, config: AppConfig, health: StoreHealth) -> None:
        """A fetch worked: a streak of failures is over, here and in the table."""
        ended = self._remembered.pop(_app_scope(config), None)
        if ended is not None and ended.streak and health.table_answers:
            with health.tolerate():
                self._table.forget_cooldown(config.app, config.version_id)

    def _spend(self, budget: Budget) -> None:
        if self._table.count_mint(budget.counter, budget.limit) is not None:
            return
        record_mint_limit_reached()
        logger.warning("mint limit reached for this hour", extra={"app": budget.app, "budget": budget.kind,
                                                                  "holder": budget.holder, "limit": budget.limit})
        held = self._remember(budget.scope, CooldownKind.MINT_LIMIT, HOUR - self._clock() % HOUR, detail=budget.kind)
        raise held.error(self._clock())

    def _check(self, scope: str) -> None:
        held = self._remembered.get(scope)
        now = self._clock()
        if held is not None and held.until > now:
            raise held.error(now)

    def _next_streak(self, scope: str) -> int:
        previous = self._remembered.get(scope)
        # Failures continue when one comes soon after the last hold-off ended.
        continues = previous is not None and previous.kind is CooldownKind.FAILING and \
            self._clock() - previous.until < MAX_FAILURE_COOLDOWN_SECONDS
        return previous.streak + 1 if previous is not None and continues else 1

    def _adopt(self, scope: str, shared: Cooldown) -> None:
        """Take on a failure another container remembered, unless ours lasts longer, and answer it while it lasts."""
        ours = self._remembered.get(scope)
        if ours is None or shared.until > ours.until:
            self._remembered[scope] = shared
        self._check(scope)

    def _remember_for_app(self, config: AppConfig, kind: CooldownKind, seconds: float, health: StoreHealth,
                          streak: int = 0) -> None:
        """Hold the app's secret off here and, while the table answers, in every container."""
        held = self._remember(_app_scope(config), kind, seconds, streak=streak)
        if health.table_answers:
            with health.tolerate():
                self._table.remember_cooldown(config.app, config.version_id, held)

    def _remember(self, scope: str, kind: CooldownKind, seconds: float, *, streak: int = 0,
                  detail: str = "") -> Cooldown:
        held = Cooldown(kind, self._clock() + min(max(0.0, seconds), MAX_COOLDOWN_SECONDS), streak, detail)
        self._remembered.pop(scope, None)  # re-inserted last: the oldest go first when the bound is reached
        self._remembered[scope] = held
        if len(self._remembered) > MAX_REMEMBERED:
            self._forget_oldest()
        return held

    def _forget_oldest(self) -> None:
        now = self._clock()
        self._remembered = {scope: held for scope, held in self._remembered.items()
                            if held.until + MAX_FAILURE_COOLDOWN_SECONDS > now}  # ended ones keep a streak a while
        while len(self._remembered) > MAX_REMEMBERED:
            del self._remembered[next(iter(self._remembered))]


def _app_scope(config: AppConfig) -> str:
    return f"app#{config.app}#{config.version_id}"


def _key_scope(key: TokenKey) -> str:
    return key.table_key


def _unknown_scope(app: str) -> str:
    return f"unknown#{app}"


class Budget(NamedTuple):
    """An hourly mint budget: the app's, or one calling holder's within the app."""

    kind: str  # app | caller
    app: str
    holder: str  # the caller's; "" for the app's
    limit: int

    @classmethod
    def of_app(cls, app: str, limit: int) -> Budget:
        return cls("app", app, "", limit)

    @classmethod
    def of_caller(cls, app: str, holder: str, limit: int) -> Budget:
        return cls("caller", app, holder, limit)

    @property
    def counter(self) -> str:
        """What its count is kept under in the table (a holder ARN can be long: a digest names it)."""
        if not self.holder:
            return self.app
        return f"{self.app}#caller#{hashlib.sha256(self.holder.encode()).hexdigest()[:32]}"

    @property
    def scope(self) -> str:
        return f"mints#{self.counter}"
