"""UpstreamGuard: every remembered failure and the mint budgets, as rules, against an in-memory table (the
real GuardTable's reads and writes: test_guard_table.py). The rules are tested as upstream_guard.py's docstring
states them: one parametrised test, built from that table, checks each row's kind, what it holds off, for how
long and whether other containers hold off too (a second guard on the same table)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from token_vending import upstream_guard
from token_vending.app_config import AppConfig
from token_vending.errors import (
    CredentialsRejected,
    MintLimitReached,
    UpstreamError,
    UpstreamThrottled,
    UpstreamUnavailable,
    VendingError,
)
from token_vending.observability import take_metrics
from token_vending.settings import Settings
from token_vending.store_health import StoreHealth
from token_vending.tokens import TokenKey
from token_vending.upstream_guard import CooldownKind, UpstreamGuard

from .conftest import Clock
from .guard_fakes import InMemoryGuardTable

SETTINGS = Settings()
RETRY_AFTER = 30
BILLING, SUPPORT = "arn:aws:sts::1:assumed-role/billing", "arn:aws:sts::1:assumed-role/support"


@dataclass(frozen=True)
class Rule:
    kind: CooldownKind
    holds_off: str  # app secret | token key | budget
    seconds: str  # what the table says it lasts
    shared: str  # yes | no


def rules_table() -> list[Rule]:
    doc = upstream_guard.__doc__ or ""
    rows = re.findall(r"^\| (\w+) +\| [^|]+\| ([^|]+?) +\| ([^|]+?) +\| (\w+) +\|$", doc, re.M)
    return [Rule(CooldownKind(kind), holds, seconds, shared) for kind, holds, seconds, shared in rows
            if kind != "kind"]


def test_the_table_has_one_rule_per_kind() -> None:
    assert sorted(rule.kind for rule in rules_table()) == sorted(CooldownKind)


class Endpoint:
    """The endpoint a guarded fetch calls: counts the calls, and answers or raises as told."""

    def __init__(self) -> None:
        self.calls = 0

    def answering(self, error: VendingError | None = None) -> Callable[[], str]:
        def call() -> str:
            self.calls += 1
            if error is not None:
                raise error
            return "issued"
        return call


class Situation:
    """One app, two of its token keys, the guard under test and a second container's guard on the same table."""

    def __init__(self, clock: Clock, **settings: int) -> None:
        self.clock = clock
        self.settings = replace(SETTINGS, **settings)
        self.table = InMemoryGuardTable(clock)
        self.endpoint = Endpoint()
        self.config = AppConfig(app="demo", client_id="id", client_secret="s", allowed_scopes=frozenset({"a", "b"}),
                                allowed_callers=("111122223333",), version_id="v1")
        self.key = TokenKey("demo", "a", self.config.credential_id)
        self.other_key = TokenKey("demo", "b", self.config.credential_id)
        self.guard = self.new_guard()
        self.second_container = self.new_guard()
        self.health = StoreHealth()

    def new_guard(self, **settings: int) -> UpstreamGuard:
        return UpstreamGuard(replace(self.settings, **settings), self.table, clock=self.clock)  # type: ignore[arg-type]

    def fetch(self, error: VendingError | None = None, key: TokenKey | None = None, payer: str | None = None,
              guard: UpstreamGuard | None = None) -> str:
        return (guard or self.guard).fetch(self.config, key or self.key, payer, self.health,
                                           self.endpoint.answering(error))

    def held(self, guard: UpstreamGuard, config: AppConfig, key: TokenKey) -> VendingError | None:
        """What a fetch for the key answers without calling the endpoint, or None when it may call it."""
        calls = self.endpoint.calls
        try:
            guard.fetch(config, key, None, StoreHealth(), self.endpoint.answering())
        except VendingError as error:
            assert self.endpoint.calls == calls  # held off: the endpoint was not asked
            return error
        return None


def failing(error: VendingError) -> Callable[[Situation], None]:
    def trigger(situation: Situation) -> None:
        with pytest.raises(type(error)):
            situation.fetch(error)
    return trigger


TRIGGERS: dict[CooldownKind, Callable[[Situation], None]] = {
    CooldownKind.THROTTLED: failing(UpstreamThrottled(retry_after=RETRY_AFTER)),
    CooldownKind.FAILING: failing(UpstreamUnavailable()),
    CooldownKind.CREDENTIALS_REJECTED: failing(CredentialsRejected()),
    CooldownKind.REFUSED: failing(UpstreamError("refused (400)")),
    CooldownKind.MINT_LIMIT: lambda s: s.fetch(key=s.other_key),  # spends an app budget of 1
}
ANSWERS = {
    CooldownKind.THROTTLED: (503, "upstream_unavailable"), CooldownKind.FAILING: (503, "upstream_unavailable"),
    CooldownKind.CREDENTIALS_REJECTED: (503, "upstream_unavailable"), CooldownKind.REFUSED: (502, "upstream_error"),
    CooldownKind.MINT_LIMIT: (429, "mint_limit_reached"),
}


def lasts(rule: Rule, clock: Clock) -> float:
    """How long the table says the rule holds off, in seconds."""
    if rule.seconds.startswith("the Retry-After"):
        return RETRY_AFTER
    if rule.seconds == "the rest of the clock hour":
        return 3600 - clock() % 3600
    return float(getattr(SETTINGS, rule.seconds.lower()))


@pytest.mark.parametrize("rule", rules_table(), ids=lambda rule: rule.kind.value)
def test_each_rule_holds_off_what_and_as_long_as_its_table_row_says(rule: Rule, clock: Clock) -> None:
    situation = Situation(clock, max_mints_per_app_per_hour=1 if rule.kind is CooldownKind.MINT_LIMIT else 100)
    clock.advance(1234.5)  # mid-hour
    TRIGGERS[rule.kind](situation)
    config, key, other_key = situation.config, situation.key, situation.other_key
    new_version = replace(config, version_id="v2")

    held = situation.held(situation.guard, config, key)
    assert held is not None
    assert (held.status, held.code) == ANSWERS[rule.kind]
    if held.status in (503, 429):
        assert held.retry_after == pytest.approx(lasts(rule, clock), abs=1)
    if rule.holds_off == "token key":
        assert situation.held(situation.guard, config, other_key) is None
    if rule.holds_off in ("app secret", "budget"):
        assert situation.held(situation.guard, config, other_key) is not None
    if rule.holds_off == "app secret":
        assert situation.held(situation.guard, new_version, TokenKey("demo", "a", "new-credentials")) is None
    if rule.shared == "yes":
        assert situation.held(situation.second_container, config, key) is not None
    else:
        fresh_budget = situation.new_guard(max_mints_per_app_per_hour=100)  # another container, its budget not spent
        assert situation.held(fresh_budget, config, key) is None

    clock.advance(lasts(rule, clock))
    assert situation.held(situation.guard, config, key) is None


def test_a_failing_endpoint_is_held_off_longer_while_failures_continue(clock: Clock) -> None:
    situation = Situation(clock)
    waits = []
    for _ in range(6):
        failing(UpstreamUnavailable())(situation)
        held = situation.held(situation.guard, situation.config, situation.key)
        assert held is not None and held.retry_after is not None
        waits.append(held.retry_after)
        clock.advance(held.retry_after)

    assert waits == [5 * 2**n if 5 * 2**n < 60 else 60 for n in range(6)]  # doubling, at most a minute


def test_a_success_ends_the_streak_here_and_in_the_table(clock: Clock) -> None:
    situation = Situation(clock)
    failing(UpstreamUnavailable())(situation)
    clock.advance(SETTINGS.upstream_failure_cooldown_seconds)

    assert situation.fetch() == "issued"
    assert situation.table.cooldowns == {}
    failing(UpstreamUnavailable())(situation)

    held = situation.held(situation.guard, situation.config, situation.key)
    assert held is not None and held.retry_after == SETTINGS.upstream_failure_cooldown_seconds  # a new streak
    assert situation.table.cooldowns  # the new failure is shared again


def test_a_failure_another_container_remembered_continues_its_streak_here(clock: Clock) -> None:
    situation = Situation(clock)
    with pytest.raises(UpstreamUnavailable):
        situation.fetch(UpstreamUnavailable(), guard=situation.second_container)

    assert situation.held(situation.guard, situation.config, situation.key) is not None  # adopted from the table
    clock.advance(SETTINGS.upstream_failure_cooldown_seconds)
    failing(UpstreamUnavailable())(situation)

    held = situation.held(situation.guard, situation.config, situation.key)
    assert held is not None and held.retry_after == 2 * SETTINGS.upstream_failure_cooldown_seconds


def test_the_budget_counts_every_admitted_fetch_and_starts_again_each_hour(clock: Clock) -> None:
    situation = Situation(clock, max_mints_per_app_per_hour=3)
    for _ in range(3):
        situation.fetch()

    with pytest.raises(MintLimitReached) as refused:
        situation.fetch(key=situation.other_key)
    assert refused.value.retry_after == 3600  # the clock starts on a whole hour
    assert situation.endpoint.calls == 3
    clock.advance(3600)
    assert situation.fetch() == "issued"


def test_every_refusal_by_a_budget_counts_in_mint_limit_reached(clock: Clock) -> None:
    situation = Situation(clock, max_mints_per_app_per_hour=1)
    situation.fetch()
    take_metrics()

    for _ in range(2):  # the first refusal counts the budget in the table, the second is remembered
        with pytest.raises(MintLimitReached):
            situation.fetch()

    counts, _ = take_metrics()
    assert counts["MintLimitReached"] == 2


def test_with_the_table_down_memory_still_holds_off_and_the_budget_is_not_counted(clock: Clock) -> None:
    situation = Situation(clock, max_mints_per_app_per_hour=1)
    situation.table.down = True
    failing(UpstreamThrottled(retry_after=9))(situation)

    with pytest.raises(UpstreamUnavailable):
        situation.fetch()
    other_app = replace(situation.config, app="other")
    for _ in range(3):  # past the budget of 1: nothing is counted while the table is out
        situation.guard.fetch(other_app, TokenKey("other", "a", other_app.credential_id), BILLING, situation.health,
                              situation.endpoint.answering())

    assert not situation.health.table_answers
    assert situation.table.mints == {} and situation.table.cooldowns == {}


def test_no_remembered_failure_holds_off_longer_than_an_hour(clock: Clock) -> None:
    situation = Situation(clock)
    failing(UpstreamThrottled(retry_after=10**9))(situation)

    held = situation.held(situation.guard, situation.config, situation.key)

    assert held is not None and held.retry_after == 3600


def test_a_payer_past_its_own_budget_is_held_off_alone_and_spends_none_of_the_apps(clock: Clock) -> None:
    situation = Situation(clock, max_mints_per_caller_per_hour=2, max_mints_per_app_per_hour=3)
    for _ in range(2):
        situation.fetch(payer=BILLING)

    with pytest.raises(MintLimitReached) as refused:
        situation.fetch(key=situation.other_key, payer=BILLING)
    situation.fetch(key=situation.other_key, payer=SUPPORT)  # the app's third and last

    assert refused.value.audited == {"budget": "caller", "budget_holder": BILLING}
    with pytest.raises(MintLimitReached) as app_spent:
        situation.fetch(payer=SUPPORT)
    assert app_spent.value.audited == {"budget": "app", "budget_holder": ""}
    assert situation.endpoint.calls == 3


def test_a_fetch_nobody_pays_for_spends_the_apps_budget_only(clock: Clock) -> None:
    situation = Situation(clock, max_mints_per_caller_per_hour=1, max_mints_per_app_per_hour=3)
    situation.fetch(payer=BILLING)

    situation.fetch(payer=None)  # the schedule's, or the replacement of a token its reporter paid for
    situation.fetch(payer=None)

    with pytest.raises(MintLimitReached) as refused:
        situation.fetch(payer=None)
    assert refused.value.audited == {"budget": "app", "budget_holder": ""}


def test_a_report_spends_one_mint_of_the_reporters_budget_and_none_of_the_apps(clock: Clock) -> None:
    situation = Situation(clock, max_mints_per_caller_per_hour=2, max_mints_per_app_per_hour=2)
    situation.guard.charge_report("demo", BILLING, situation.health)
    situation.fetch(payer=None)  # the mint that replaces the reported token
    situation.guard.charge_report("demo", BILLING, situation.health)

    with pytest.raises(MintLimitReached) as refused:
        situation.guard.charge_report("demo", BILLING, situation.health)
    assert refused.value.audited == {"budget": "caller", "budget_holder": BILLING}
    assert refused.value.retry_after == 3600
    situation.guard.charge_report("demo", SUPPORT, situation.health)  # another reporter's budget is its own
    assert situation.fetch(payer=None) == "issued"  # the app's second mint: reports spent none of it
