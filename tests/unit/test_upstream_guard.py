"""UpstreamGuard: every remembered failure and the mint budget. The rules are tested as upstream_guard.py's
docstring states them: one parametrised test, built from that table, checks each row's kind, what it holds
off, for how long and whether other containers hold off too (a second guard on the same table)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from token_vending import upstream_guard
from token_vending.app_config import AppConfig
from token_vending.errors import (
    MintLimitReached,
    UnknownApp,
    UpstreamError,
    UpstreamThrottled,
    UpstreamUnavailable,
    VendingError,
)
from token_vending.settings import Settings
from token_vending.token_store import StoreHealth
from token_vending.tokens import TokenKey
from token_vending.upstream_guard import CooldownKind, UpstreamGuard

from .conftest import Aws, Clock

SETTINGS = Settings()
RETRY_AFTER = 30


@dataclass(frozen=True)
class Rule:
    kind: CooldownKind
    holds_off: str  # app secret | token key | app name | app
    seconds: str  # what the table says it lasts
    shared: str  # yes | no


def rules_table() -> list[Rule]:
    doc = upstream_guard.__doc__ or ""
    rows = re.findall(r"^\| (\w+) +\| [^|]+\| ([^|]+?) +\| ([^|]+?) +\| (\w+) +\|$", doc, re.M)
    return [Rule(CooldownKind(kind), holds, seconds, shared) for kind, holds, seconds, shared in rows
            if kind != "kind"]


def test_the_table_has_one_rule_per_kind() -> None:
    assert sorted(rule.kind for rule in rules_table()) == sorted(CooldownKind)


class Situation:
    """One app, two of its token keys, the guard under test and a second container's guard on the same table."""

    def __init__(self, aws: Aws, clock: Clock, max_mints: int = 100) -> None:
        self.clock = clock
        self.config = AppConfig(app="demo", client_id="id", client_secret="s", allowed_scopes=frozenset({"a", "b"}),
                                allowed_callers=("111122223333",), version_id="v1")
        self.key = TokenKey("demo", "a", self.config.credential_id)
        self.other_key = TokenKey("demo", "b", self.config.credential_id)
        self.guard = self.new_guard(aws, max_mints)
        self.second_container = self.new_guard(aws, max_mints)
        self.health = StoreHealth()

    def new_guard(self, aws: Aws, max_mints: int) -> UpstreamGuard:
        return UpstreamGuard(replace(SETTINGS, max_mints_per_app_per_hour=max_mints), aws.guard_table(),
                             clock=self.clock)

    def held(self, guard: UpstreamGuard, config: AppConfig, key: TokenKey) -> VendingError | None:
        try:
            guard.check_app(config.app)
            guard.admit(config, key, None, StoreHealth())
        except VendingError as error:
            return error
        return None


TRIGGERS: dict[CooldownKind, Callable[[Situation], None]] = {
    CooldownKind.THROTTLED: lambda s: s.guard.failed(s.config, s.key, UpstreamThrottled(retry_after=RETRY_AFTER),
                                                     s.health),
    CooldownKind.FAILING: lambda s: s.guard.failed(s.config, s.key, UpstreamUnavailable(), s.health),
    CooldownKind.CREDENTIALS_REJECTED: lambda s: s.guard.rejected(s.config, s.health),
    CooldownKind.REFUSED: lambda s: s.guard.failed(s.config, s.key, UpstreamError("refused (400)"), s.health),
    CooldownKind.UNKNOWN_APP: lambda s: s.guard.unknown_app("demo"),
    CooldownKind.MINT_LIMIT: lambda s: s.guard.admit(s.config, s.other_key, None, s.health),  # spends a budget of 1
}
ANSWERS = {
    CooldownKind.THROTTLED: (503, "upstream_unavailable"), CooldownKind.FAILING: (503, "upstream_unavailable"),
    CooldownKind.CREDENTIALS_REJECTED: (503, "upstream_unavailable"), CooldownKind.REFUSED: (502, "upstream_error"),
    CooldownKind.UNKNOWN_APP: (404, "unknown_app"), CooldownKind.MINT_LIMIT: (429, "mint_limit_reached"),
}


def lasts(rule: Rule, clock: Clock) -> float:
    """How long the table says the rule holds off, in seconds."""
    if rule.seconds.startswith("the Retry-After"):
        return RETRY_AFTER
    if rule.seconds == "the rest of the clock hour":
        return 3600 - clock() % 3600
    return float(getattr(SETTINGS, rule.seconds.lower()))


@pytest.mark.parametrize("rule", rules_table(), ids=lambda rule: rule.kind.value)
def test_each_rule_holds_off_what_and_as_long_as_its_table_row_says(rule: Rule, aws: Aws, clock: Clock) -> None:
    situation = Situation(aws, clock, max_mints=1 if rule.kind is CooldownKind.MINT_LIMIT else 100)
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
    if rule.holds_off in ("app secret", "app", "app name"):
        assert situation.held(situation.guard, config, other_key) is not None
    if rule.holds_off == "app secret":
        assert situation.held(situation.guard, new_version, TokenKey("demo", "a", "new-credentials")) is None
    if rule.shared == "yes":
        assert situation.held(situation.second_container, config, key) is not None
    else:
        fresh_budget = situation.new_guard(aws, max_mints=100)  # another container, its budget not spent
        assert situation.held(fresh_budget, config, key) is None

    clock.advance(lasts(rule, clock))
    assert situation.held(situation.guard, config, key) is None


def test_a_failing_endpoint_is_held_off_longer_while_failures_continue(aws: Aws, clock: Clock) -> None:
    situation = Situation(aws, clock)
    waits = []
    for _ in range(6):
        situation.guard.failed(situation.config, situation.key, UpstreamUnavailable(), situation.health)
        held = situation.held(situation.guard, situation.config, situation.key)
        assert held is not None and held.retry_after is not None
        waits.append(held.retry_after)
        clock.advance(held.retry_after)

    assert waits == [5, 10, 20, 40, 60, 60]


def test_a_success_ends_the_streak_here_and_in_the_table(aws: Aws, clock: Clock) -> None:
    situation = Situation(aws, clock)
    situation.guard.failed(situation.config, situation.key, UpstreamUnavailable(), situation.health)
    clock.advance(5)

    situation.guard.succeeded(situation.config, situation.health)
    situation.guard.failed(situation.config, situation.key, UpstreamUnavailable(), situation.health)

    held = situation.held(situation.guard, situation.config, situation.key)
    assert held is not None and held.retry_after == 5
    assert aws.items("cooldown#")  # the new failure is shared again


def test_a_failure_another_container_remembered_continues_its_streak_here(aws: Aws, clock: Clock) -> None:
    situation = Situation(aws, clock)
    situation.second_container.failed(situation.config, situation.key, UpstreamUnavailable(), situation.health)

    assert situation.held(situation.guard, situation.config, situation.key) is not None  # adopted from the table
    clock.advance(5)
    situation.guard.failed(situation.config, situation.key, UpstreamUnavailable(), situation.health)

    held = situation.held(situation.guard, situation.config, situation.key)
    assert held is not None and held.retry_after == 10


def test_credentials_rejected_is_known_while_it_lasts(aws: Aws, clock: Clock) -> None:
    situation = Situation(aws, clock)
    assert not situation.guard.credentials_rejected(situation.config)

    situation.guard.rejected(situation.config, situation.health)

    assert situation.guard.credentials_rejected(situation.config)
    assert not situation.guard.credentials_rejected(replace(situation.config, version_id="v2"))
    clock.advance(SETTINGS.invalid_client_cooldown_seconds)
    assert not situation.guard.credentials_rejected(situation.config)


def test_the_budget_counts_every_admitted_fetch_and_starts_again_each_hour(aws: Aws, clock: Clock) -> None:
    situation = Situation(aws, clock)
    guard = situation.new_guard(aws, max_mints=3)
    for _ in range(3):
        guard.admit(situation.config, situation.key, None, situation.health)

    with pytest.raises(MintLimitReached) as refused:
        guard.admit(situation.config, situation.other_key, None, situation.health)
    assert refused.value.retry_after == 3600
    clock.advance(3600)
    guard.admit(situation.config, situation.key, None, situation.health)


def test_with_the_table_down_memory_still_holds_off_and_the_budget_is_not_counted(aws: Aws, clock: Clock) -> None:
    situation = Situation(aws, clock)
    other_app = replace(situation.config, app="other")
    health = StoreHealth()
    with aws.stack.moto.outage("dynamodb"):
        situation.guard.failed(situation.config, situation.key, UpstreamThrottled(retry_after=9), health)
        with pytest.raises(UpstreamUnavailable):
            situation.guard.admit(situation.config, situation.key, None, health)
        situation.guard.admit(other_app, TokenKey("other", "a", other_app.credential_id), None, health)

    assert not health.table_answers
    assert aws.items("mints#") == [] and aws.items("cooldown#") == []


def test_no_remembered_failure_holds_off_longer_than_an_hour(aws: Aws, clock: Clock) -> None:
    situation = Situation(aws, clock)
    situation.guard.failed(situation.config, situation.key, UpstreamThrottled(retry_after=10**9), situation.health)

    held = situation.held(situation.guard, situation.config, situation.key)

    assert held is not None and held.retry_after == 3600


def test_unknown_apps_are_remembered_per_name(aws: Aws, clock: Clock) -> None:
    guard = Situation(aws, clock).guard
    guard.unknown_app("ghost")

    with pytest.raises(UnknownApp):
        guard.check_app("ghost")
    guard.check_app("demo")


def test_a_caller_past_its_own_budget_is_held_off_alone_and_spends_none_of_the_apps(aws: Aws, clock: Clock) -> None:
    situation = Situation(aws, clock)
    guard = UpstreamGuard(replace(SETTINGS, max_mints_per_caller_per_hour=2, max_mints_per_app_per_hour=3),
                          aws.guard_table(), clock=clock)
    billing, support = "arn:aws:sts::1:assumed-role/billing", "arn:aws:sts::1:assumed-role/support"
    for _ in range(2):
        guard.admit(situation.config, situation.key, billing, situation.health)

    with pytest.raises(MintLimitReached) as refused:
        guard.admit(situation.config, situation.other_key, billing, situation.health)
    guard.admit(situation.config, situation.other_key, support, situation.health)  # the app's third and last

    assert refused.value.audited == {"budget": "caller"}
    with pytest.raises(MintLimitReached) as app_spent:
        guard.admit(situation.config, situation.key, support, situation.health)
    assert app_spent.value.audited == {"budget": "app"}
