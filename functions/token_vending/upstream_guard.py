"""The guard of the token endpoint: remembered failures and the mint budgets, and the table items
where it shares them between containers (`GuardTable`). A vend asks it once per fetch
(`UpstreamGuard.fetch`: admit, call the endpoint, remember what the answer calls for) and a report
once before it drops a token (`charge_report`).

Every remembered failure is one `Cooldown`: a kind, an `until` on the wall clock (it crosses
containers through the table) and, for a failing endpoint, a streak. While one lasts, a fetch
that would ask again answers the error its kind maps to instead. The rules, one per kind:

| kind                 | after                              | holds off  | for                               | shared |
|----------------------|------------------------------------|------------|-----------------------------------|--------|
| throttled            | 429/503 with Retry-After           | app secret | the Retry-After (at most 3600 s)  | yes    |
| failing              | 5xx without Retry-After, timeout   | app secret | UPSTREAM_FAILURE_COOLDOWN_SECONDS | yes    |
| credentials_rejected | invalid_client                     | app secret | INVALID_CLIENT_COOLDOWN_SECONDS   | yes    |
| refused              | another 4xx, an unusable answer    | token key  | REFUSED_COOLDOWN_SECONDS          | no     |
| mint_limit           | a mint budget spent (below)        | budget     | the rest of the clock hour        | no     |

- "failing" covers an unreachable endpoint too; its time doubles with each failure that comes
  within 60 s of the last hold-off's end (the streak), at most 60 s. A success ends the streak.
- "app secret" is the app and its secret's version: a new version starts clean (the vend reads
  the secret again when credentials are held off, and asks with the new ones).
- "shared": every container holds off too, through the table (best-effort: when DynamoDB is out,
  this container's memory still holds off). No remembered failure lasts more than an hour,
  whoever wrote it.
- The mint budgets count each fetch before it is made, atomically in the table: first the paying
  holder's (MAX_MINTS_PER_CALLER_PER_HOUR, per app and holder, whatever the app's token mode), then
  the app's (MAX_MINTS_PER_APP_PER_HOUR). The payer is the caller's budget holder (policy.py: a
  role's sessions share their role's, an account's federated users one for all); none for the
  scheduled run, nor for the mint that replaces a reported token, whose reporter paid already
  (`charge_report`). A payer past its own budget is held off alone and spends none of the app's.
  When DynamoDB is out nothing is counted (the vend goes on, degraded). A spent budget is
  remembered per container; every refusal counts in MintLimitReached.
- Each answers what it stands for: 503 upstream_unavailable with the Retry-After left (the
  first three), the same 502 (refused), 429 mint_limit_reached.

The guard's items in the table (beside token_store.py's):
- cooldown#{app}#{secret version}: cooldown (its kind), until, streak, ttl
- mints#{app}#{hour} and mints#{app}#caller#{holder digest}#{hour}: count, ttl: upstream token
  requests for the app, and those one holder paid for, in that clock hour
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, TypeVar

from .app_config import AppConfig
from .aws_errors import store_errors
from .errors import (
    CredentialsHeldOff,
    CredentialsRejected,
    MintLimitReached,
    StoreUnavailable,
    UpstreamError,
    UpstreamThrottled,
    UpstreamUnavailable,
    VendingError,
)
from .observability import logger, record_mint_limit_reached
from .settings import Settings
from .shared_table import HOUR, TTL_GRACE_SECONDS, Table
from .store_health import StoreHealth
from .tokens import TokenKey

MAX_COOLDOWN_SECONDS = 3600  # no remembered failure holds off longer, whoever wrote it
MAX_FAILURE_COOLDOWN_SECONDS = 60  # the doubling stops here: an hour-long outage is retried every minute
MAX_REMEMBERED = 4096  # token keys are many (scope sets): bound the memory

Fetched = TypeVar("Fetched")


class CooldownKind(StrEnum):
    THROTTLED = "throttled"
    FAILING = "failing"
    CREDENTIALS_REJECTED = "credentials_rejected"
    REFUSED = "refused"
    MINT_LIMIT = "mint_limit"


UNAVAILABLE_DESCRIPTIONS = {
    CooldownKind.THROTTLED: "the token endpoint asked us to wait",
    CooldownKind.FAILING: "the token endpoint is failing; trying again shortly",
}


@dataclass(frozen=True)
class Cooldown:
    kind: CooldownKind
    until: float  # epoch seconds
    streak: int = 0  # consecutive failures of a failing endpoint
    detail: str = ""  # refused: the 502's description, answered again; mint_limit: which budget (app | caller)
    holder: str = ""  # mint_limit: whose budget ("" for the app's)

    def error(self, now: float) -> VendingError:
        """What a fetch answers while it lasts."""
        retry_after = max(1, math.ceil(self.until - now))
        if self.kind is CooldownKind.REFUSED:
            return UpstreamError(self.detail)
        if self.kind is CooldownKind.MINT_LIMIT:
            return MintLimitReached(self.detail or "app", self.holder, retry_after=retry_after)
        if self.kind is CooldownKind.CREDENTIALS_REJECTED:
            return CredentialsHeldOff("the token endpoint rejected the application's credentials",
                                      retry_after=retry_after)
        return UpstreamUnavailable(UNAVAILABLE_DESCRIPTIONS[self.kind], retry_after=retry_after)


class Budget(NamedTuple):
    """An hourly mint budget: the app's, or one paying holder's within the app."""

    kind: str  # app | caller
    app: str
    holder: str  # the payer's; "" for the app's
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


class UpstreamGuard:
    def __init__(self, settings: Settings, table: GuardTable, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._table = table
        self._clock = clock
        self._remembered: dict[str, Cooldown] = {}  # by what it holds off (see the _scope functions)

    def fetch(self, config: AppConfig, key: TokenKey, payer: str | None, health: StoreHealth,
              call: Callable[[], Fetched]) -> Fetched:
        """Call the endpoint (`call`) for this key unless a remembered failure or a spent budget holds it off,
        spending `payer`'s budget (None: nobody's, see the module docstring) and the app's on it; then
        remember what a failure calls for, or that the endpoint works again."""
        budgets = [Budget.of_app(config.app, self._settings.max_mints_per_app_per_hour)]
        if payer is not None:  # the payer's first: a payer past its own budget spends none of the app's
            budgets.insert(0, Budget.of_caller(config.app, payer, self._settings.max_mints_per_caller_per_hour))
        self._admit(config, key, budgets, health)
        try:
            fetched = call()
        except VendingError as error:
            self._failed(config, key, error, health)
            raise
        self._succeeded(config, health)
        return fetched

    def charge_report(self, app: str, payer: str, health: StoreHealth) -> None:
        """Spend one mint of the reporting holder's budget on the token its report drops (the mint that
        replaces it spends only the app's); MintLimitReached when it is spent."""
        budget = Budget.of_caller(app, payer, self._settings.max_mints_per_caller_per_hour)
        self._check(budget.scope)
        if health.table_answers:
            self._spend(budget)

    def _admit(self, config: AppConfig, key: TokenKey, budgets: list[Budget], health: StoreHealth) -> None:
        for scope in (_key_scope(key), _app_scope(config), *(budget.scope for budget in budgets)):
            self._check(scope)
        if not health.table_answers:
            return
        try:
            shared = self._table.cooldown(config.app, config.version_id)
            if shared:
                self._adopt(_app_scope(config), shared)
            for budget in budgets:
                self._spend(budget)
        except StoreUnavailable as outage:
            health.note(outage)  # DynamoDB is out: memory alone holds off, and nothing is counted

    def _failed(self, config: AppConfig, key: TokenKey, error: VendingError, health: StoreHealth) -> None:
        """Remember what a failed fetch calls for."""
        if isinstance(error, CredentialsRejected):
            self._remember_for_app(config, CooldownKind.CREDENTIALS_REJECTED,
                                   self._settings.invalid_client_cooldown_seconds, health)
        elif isinstance(error, UpstreamThrottled):
            self._remember_for_app(config, CooldownKind.THROTTLED, error.retry_after or 0, health)
        elif isinstance(error, UpstreamUnavailable):
            streak = self._next_streak(_app_scope(config))
            seconds = min(self._settings.upstream_failure_cooldown_seconds * 2 ** (streak - 1),
                          MAX_FAILURE_COOLDOWN_SECONDS)
            self._remember_for_app(config, CooldownKind.FAILING, seconds, health, streak=streak)
        elif isinstance(error, UpstreamError):
            self._remember(_key_scope(key), Cooldown(CooldownKind.REFUSED,
                                                     self._until(self._settings.refused_cooldown_seconds),
                                                     detail=error.description))

    def _succeeded(self, config: AppConfig, health: StoreHealth) -> None:
        """A fetch worked: a streak of failures is over, here and in the table."""
        ended = self._remembered.pop(_app_scope(config), None)
        if ended is None or not ended.streak or not health.table_answers:
            return
        try:
            self._table.forget_cooldown(config.app, config.version_id)
        except StoreUnavailable as outage:
            health.note(outage)  # the shared streak runs out on its own

    def _spend(self, budget: Budget) -> None:
        if self._table.count_mint(budget.counter, budget.limit) is not None:
            return
        logger.warning("mint limit reached for this hour", extra={"app": budget.app, "budget": budget.kind,
                                                                  "holder": budget.holder, "limit": budget.limit})
        self._remember(budget.scope, Cooldown(CooldownKind.MINT_LIMIT, self._until(HOUR - self._clock() % HOUR),
                                              detail=budget.kind, holder=budget.holder))
        self._check(budget.scope)

    def _check(self, scope: str) -> None:
        held = self._remembered.get(scope)
        now = self._clock()
        if held is not None and held.until > now:
            if held.kind is CooldownKind.MINT_LIMIT:
                record_mint_limit_reached()  # every refusal, whether just counted or remembered
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
        held = self._remember(_app_scope(config), Cooldown(kind, self._until(seconds), streak))
        if not health.table_answers:
            return
        try:
            self._table.remember_cooldown(config.app, config.version_id, held)
        except StoreUnavailable as outage:
            health.note(outage)  # this container still holds off; the others will ask and learn

    def _until(self, seconds: float) -> float:
        """When a hold-off of that many seconds from now ends: never more than an hour away."""
        return self._clock() + min(max(0.0, seconds), MAX_COOLDOWN_SECONDS)

    def _remember(self, scope: str, held: Cooldown) -> Cooldown:
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


class GuardTable(Table):
    """What the guard shares between containers: remembered failures and the hourly mint counters."""

    def remember_cooldown(self, app: str, secret_version: str, cooldown: Cooldown) -> None:
        """Tell every container that the token endpoint is not to be called for this app until then."""
        with store_errors():
            self._dynamodb().put_item(TableName=self._table, Item={
                "pk": {"S": _cooldown_key(app, secret_version)}, "kind": {"S": "cooldown"},
                "cooldown": {"S": cooldown.kind.value}, "until": {"N": f"{cooldown.until:.3f}"},
                "streak": {"N": str(cooldown.streak)},
                "ttl": {"N": str(int(cooldown.until) + TTL_GRACE_SECONDS)}})

    def cooldown(self, app: str, secret_version: str) -> Cooldown | None:
        """The app's remembered failure, if one is recorded (it may have run out: its streak still counts).
        Whoever wrote it, it holds off no longer than any remembered failure may."""
        item = self._get_item(_cooldown_key(app, secret_version))
        if not item:
            return None
        try:
            kind = CooldownKind(item.get("cooldown", {}).get("S", CooldownKind.THROTTLED.value))
            until = min(float(item["until"]["N"]), self._clock() + MAX_COOLDOWN_SECONDS)
            return Cooldown(kind, until, streak=int(item.get("streak", {}).get("N", "0")))
        except (KeyError, ValueError, TypeError):
            return None  # not one we wrote: nothing to hold off for

    def forget_cooldown(self, app: str, secret_version: str) -> None:
        with store_errors():
            self._dynamodb().delete_item(TableName=self._table, Key={"pk": {"S": _cooldown_key(app, secret_version)}})

    def count_mint(self, budget: str, limit: int) -> int | None:
        """Count one upstream token request against a budget (`app`) in this clock hour, atomically across
        every container: the new count, or None (nothing counted) when `limit` requests were made already."""
        hour = int(self._clock() // HOUR)
        answer = self._write_if(
            "update_item", Key={"pk": {"S": f"mints#{budget}#{hour}"}},
            UpdateExpression="ADD #count :one SET #kind = :kind, #ttl = :ttl",
            ConditionExpression="attribute_not_exists(#count) OR #count < :limit",
            ExpressionAttributeNames={"#count": "count", "#kind": "kind", "#ttl": "ttl"},
            ExpressionAttributeValues={":one": {"N": "1"}, ":limit": {"N": str(limit)}, ":kind": {"S": "mints"},
                                       ":ttl": {"N": str((hour + 1) * HOUR + TTL_GRACE_SECONDS)}},
            ReturnValues="UPDATED_NEW",
        )
        return None if answer is None else int(answer["Attributes"]["count"]["N"])


def _cooldown_key(app: str, secret_version: str) -> str:
    return f"cooldown#{app}#{secret_version}"
