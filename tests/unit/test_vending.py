"""vending.py: where a token comes from (TokenSource: memory, then the loop of table -> lease or wait -> fetch ->
store) and the request's steps (TokenVendor), on a real moto server and the stub token endpoint, with a clock
the test moves (waiting costs no real time)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from token_vending.app_config import AppConfig, AppConfigStore
from token_vending.errors import DependencyUnavailable, SlowDown, TokenInProgress, UnknownApp
from token_vending.memory_cache import MemoryCache
from token_vending.observability import take_metrics
from token_vending.policy import Caller
from token_vending.reports import TokenReports
from token_vending.request_input import parse_token_request
from token_vending.settings import Settings
from token_vending.token_endpoint import TokenEndpoint
from token_vending.tokens import CachedToken, TokenKey, fingerprint
from token_vending.upstream_guard import UpstreamGuard
from token_vending.vending import TokenOrder, TokenSource, TokenVendor

from devstack.local_aws import SECRET_PREFIX, TABLE_NAME

from .conftest import CALLER_ARN, START, Aws
from .guard_fakes import InMemoryGuardTable

SETTINGS = Settings(min_report_age_seconds=60)
CALLER = Caller.parse(CALLER_ARN)
REQUEST = parse_token_request("demo", ["cx.agent-calls"])
ORDER = TokenOrder(REQUEST, CALLER.holder, CALLER.budget_holder)  # what a vend by CALLER orders of an app per caller


def endpoint(aws: Aws) -> TokenEndpoint:
    return TokenEndpoint(replace(SETTINGS, token_url=aws.stack.token_endpoint.url, token_max_retries=0))


def source(aws: Aws, sleep: Any = None, guard: UpstreamGuard | None = None) -> TokenSource:
    """A new container's TokenSource on the shared table."""
    store = aws.store()
    return TokenSource(SETTINGS, store, MemoryCache(SETTINGS.memory_trust_seconds, clock=aws.clock), endpoint(aws),
                       guard or UpstreamGuard(SETTINGS, aws.guard_table(), clock=aws.clock), clock=aws.clock,
                       sleep=sleep or aws.clock.sleep)


def vendor(aws: Aws) -> TokenVendor:
    """A new container's TokenVendor, as the container wires it."""
    configs = AppConfigStore(lambda: aws.stack.client("secretsmanager"),
                             replace(SETTINGS, secret_prefix=SECRET_PREFIX, token_url=aws.stack.token_endpoint.url))
    memory = MemoryCache(SETTINGS.memory_trust_seconds, clock=aws.clock)
    store = aws.store()
    guard = UpstreamGuard(SETTINGS, aws.guard_table(), clock=aws.clock)
    tokens = TokenSource(SETTINGS, store, memory, endpoint(aws), guard, clock=aws.clock, sleep=aws.clock.sleep)
    return TokenVendor(configs, tokens, TokenReports(SETTINGS, store, memory, guard, clock=aws.clock))


def key(config: AppConfig, order: TokenOrder = ORDER) -> TokenKey:
    return TokenKey(order.request.app, order.request.scope, config.credential_id, order.holder)


def metrics() -> dict[str, Any]:
    counts, others = take_metrics()
    return {**counts, **{name: values for name, (_, values) in others.items()}}


@pytest.fixture
def config(aws: Aws) -> AppConfig:
    config = aws.app()
    aws.stack.moto.calls.clear()
    take_metrics()
    return config


def test_a_miss_takes_the_lease_fetches_once_spends_both_budgets_stores_and_releases(
        aws: Aws, config: AppConfig) -> None:
    vended = source(aws).token_for(config, ORDER)

    assert (vended.source, vended.stored, vended.charged_to) == ("upstream", True, CALLER.budget_holder)
    assert aws.stack.token_endpoint.request_count == 1
    assert Counter(aws.stack.moto.calls) == {
        "dynamodb.GetItem": 3,  # the table, again under the lease, and the guard's shared failures
        "dynamodb.PutItem": 2,  # the lease, and the stored token
        "dynamodb.UpdateItem": 2,  # the budgets: the caller's and the app's
        "kms.Encrypt": 1,  # the token, sealed
        "dynamodb.DeleteItem": 1,  # the lease, released
    }
    assert aws.items("lease#") == []


def test_memory_then_the_table_in_a_new_container(aws: Aws, config: AppConfig) -> None:
    first = source(aws)
    minted = first.token_for(config, ORDER)
    aws.stack.moto.calls.clear()

    again = first.token_for(config, ORDER)
    assert (again.source, aws.stack.moto.calls) == ("memory", [])

    from_table = source(aws).token_for(config, ORDER)
    assert (from_table.source, aws.stack.moto.calls) == ("table", ["dynamodb.GetItem", "kms.Decrypt"])
    assert from_table.token == minted.token
    assert from_table.expires_in == int(minted.token.expires_at - aws.clock())


def test_a_memory_hit_past_its_trust_is_checked_against_the_table_without_unsealing(
        aws: Aws, config: AppConfig) -> None:
    tokens = source(aws)
    tokens.token_for(config, ORDER)
    aws.clock.advance(SETTINGS.memory_trust_seconds)
    aws.stack.moto.calls.clear()

    assert tokens.token_for(config, ORDER).source == "memory"
    assert aws.stack.moto.calls == ["dynamodb.GetItem"]


def test_a_waiter_serves_the_token_the_lease_holder_stores(aws: Aws, config: AppConfig) -> None:
    store = aws.store()
    assert store.try_acquire_lease(key(config), "another-container", SETTINGS.lease_seconds) is None
    theirs = CachedToken(access_token="sgm_from-the-holder", token_type="bearer", scope=REQUEST.scope,
                         expires_at=aws.clock() + 86_400, minted_at=aws.clock())

    def holder_stores_its_token(seconds: float) -> None:  # while we wait, the holder's fetch ends
        aws.clock.advance(seconds)
        store.put(key(config), theirs, config.version_id)
        store.release_lease(key(config), "another-container")

    vended = source(aws, sleep=holder_stores_its_token).token_for(config, ORDER)

    assert (vended.source, vended.token) == ("table", theirs)
    assert aws.stack.token_endpoint.request_count == 0
    assert metrics()["SingleFlightWaits"] == 1


def test_a_waiter_whose_holder_never_stores_answers_token_in_progress_without_asking(
        aws: Aws, config: AppConfig) -> None:
    assert aws.store().try_acquire_lease(key(config), "slow-container", 60) is None
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        aws.clock.advance(seconds)

    with pytest.raises(TokenInProgress) as refused:
        source(aws, sleep=sleep).token_for(config, ORDER)

    assert (refused.value.status, refused.value.retry_after) == (503, 1)
    assert aws.stack.token_endpoint.request_count == 0
    assert sum(slept) == pytest.approx(SETTINGS.lease_wait_seconds)
    assert max(slept) <= 0.4 * 1.2  # short, growing waits between reads
    assert metrics()["SingleFlightWaits"] == 1


def test_a_dead_holders_lease_is_taken_over_once_it_runs_out(aws: Aws, config: AppConfig) -> None:
    assert aws.store().try_acquire_lease(key(config), "dead-container", SETTINGS.lease_seconds) is None

    vended = source(aws).token_for(config, ORDER)

    assert vended.source == "upstream"
    assert aws.clock() >= START + SETTINGS.lease_seconds  # it waited for the lease to run out
    assert aws.stack.token_endpoint.request_count == 1


def test_with_kms_down_the_lease_and_the_budget_still_apply_and_only_storing_is_skipped(
        aws: Aws, config: AppConfig) -> None:
    source(aws).token_for(config, ORDER)  # a token in the table, which cannot be unsealed now
    aws.clock.advance(SETTINGS.memory_trust_seconds)
    aws.stack.moto.calls.clear()
    take_metrics()

    with aws.stack.moto.outage("kms"):
        vended = source(aws).token_for(config, ORDER)

    assert (vended.source, vended.stored) == ("upstream", False)
    assert "dynamodb.PutItem" in aws.stack.moto.calls and "dynamodb.UpdateItem" in aws.stack.moto.calls
    assert "kms.Encrypt" not in aws.stack.moto.calls  # KMS failed once: not asked again in this request
    assert metrics()["Degraded_kms"] == 1
    assert sorted(item["count"]["N"] for item in aws.items("mints#")) == ["2", "2"]  # the caller's and the app's


def test_with_dynamodb_down_it_fetches_without_lease_or_budget_and_stores_nothing(
        aws: Aws, config: AppConfig) -> None:
    with aws.stack.moto.outage("dynamodb"):
        vended = source(aws).token_for(config, ORDER)

    assert (vended.source, vended.stored) == ("upstream", False)
    assert aws.items("") == []
    assert metrics()["Degraded_dynamodb"] == 1


def test_an_entry_that_does_not_unseal_is_a_miss_that_the_fetch_overwrites(aws: Aws, config: AppConfig) -> None:
    first = source(aws).token_for(config, ORDER)
    [item] = aws.items("token#")
    aws.stack.client("dynamodb").put_item(TableName=TABLE_NAME, Item={**item, "renewal_blocked": {"BOOL": True}})
    take_metrics()

    vended = source(aws).token_for(config, ORDER)

    assert vended.source == "upstream" and vended.token != first.token
    assert metrics()["UnsealableEntries"] == 1
    [item] = aws.items("token#")
    assert item["fingerprint"]["S"] == vended.token.fingerprint


def test_the_same_token_given_back_is_served_until_it_expires_without_asking_again(
        aws: Aws, config: AppConfig) -> None:
    aws.stack.token_endpoint.expires_in = 600
    aws.stack.token_endpoint.same_token = True  # as Sangoma does until a token expires
    tokens = source(aws)
    first = tokens.token_for(config, ORDER)

    again = tokens.token_for(config, ORDER, min_ttl=3600, use_memory=False)
    later = tokens.token_for(config, ORDER, min_ttl=3600)

    assert again.token.fingerprint == first.token.fingerprint and again.token.renewal_blocked
    assert later.source == "memory"
    assert aws.stack.token_endpoint.request_count == 2


def test_a_report_drops_the_reported_token_once_it_is_old_enough(aws: Aws, config: AppConfig) -> None:
    vending = vendor(aws)
    vended = vending.vend(REQUEST, CALLER)
    reported = vended.token.fingerprint

    with pytest.raises(SlowDown) as too_soon:
        vending.report(REQUEST, CALLER, reported)
    assert too_soon.value.retry_after == 60
    aws.clock.advance(60)
    assert vending.report(REQUEST, CALLER, fingerprint("sgm_some-other-token")) == (False, CALLER.holder, "")
    assert vending.report(REQUEST, CALLER, reported) == (True, CALLER.holder, CALLER.budget_holder)
    [place] = aws.items("token#")
    assert (place["kind"]["S"], place["paid_by"]["S"]) == ("paid", CALLER.budget_holder)
    replacement = vending.vend(REQUEST, CALLER)
    assert replacement.token != vended.token
    assert (replacement.charged_to, replacement.prepaid) == (CALLER.budget_holder, True)
    caller_budget = [item for item in aws.items("mints#demo#caller#")]
    assert [item["count"]["N"] for item in caller_budget] == ["2"]  # the first mint and the report, not the replacement


def test_an_unknown_app_is_remembered_and_answered_without_asking_again(aws: Aws, config: AppConfig) -> None:
    vending = vendor(aws)
    ghost = parse_token_request("ghost", ["cx.agent-calls"])

    for _ in range(3):
        with pytest.raises(UnknownApp):
            vending.vend(ghost, CALLER)

    assert aws.stack.moto.calls == ["secretsmanager.GetSecretValue"]


class CountingGuard(UpstreamGuard):
    """The guard, counting how often a request enters it."""

    entries = 0

    def fetch(self, *args: Any, **kwargs: Any) -> Any:
        self.entries += 1
        return super().fetch(*args, **kwargs)

    def charge_report(self, *args: Any, **kwargs: Any) -> None:
        self.entries += 1
        super().charge_report(*args, **kwargs)


def test_a_vend_enters_the_guard_at_most_twice_even_when_the_credentials_rotate(aws: Aws, config: AppConfig) -> None:
    configs = AppConfigStore(lambda: aws.stack.client("secretsmanager"),
                             replace(SETTINGS, secret_prefix=SECRET_PREFIX, token_url=aws.stack.token_endpoint.url))
    guard = CountingGuard(SETTINGS, aws.guard_table(), clock=aws.clock)
    store, memory = aws.store(), MemoryCache(SETTINGS.memory_trust_seconds, clock=aws.clock)
    tokens = TokenSource(SETTINGS, store, memory, endpoint(aws), guard, clock=aws.clock, sleep=aws.clock.sleep)
    vending = TokenVendor(configs, tokens, TokenReports(SETTINGS, store, memory, guard, clock=aws.clock))
    configs.get("demo")  # the old credentials, in memory
    aws.stack.token_endpoint.clients.clear()  # which the endpoint now rejects: they were rotated
    aws.app()  # the new ones, which it accepts

    rotated = vending.vend(REQUEST, CALLER)  # rejected with the old ones, read again, fetched with the new ones
    hit = vending.vend(REQUEST, CALLER)

    assert rotated.source == "upstream" and hit.source == "memory"
    assert guard.entries == 2


def test_a_report_whose_charge_meets_a_table_outage_answers_503_and_drops_nothing(aws: Aws, config: AppConfig) -> None:
    vended = source(aws).token_for(config, ORDER)
    aws.clock.advance(SETTINGS.min_report_age_seconds)
    guard_table = InMemoryGuardTable(aws.clock)
    guard_table.down = True  # the budget's counter cannot be reached
    reports = TokenReports(SETTINGS, aws.store(), MemoryCache(SETTINGS.memory_trust_seconds, clock=aws.clock),
                           UpstreamGuard(SETTINGS, guard_table, clock=aws.clock), clock=aws.clock)  # type: ignore[arg-type]

    with pytest.raises(DependencyUnavailable) as refused:
        reports.drop(key(config), vended.token.fingerprint, CALLER.budget_holder)

    assert (refused.value.status, refused.value.retry_after) == (503, 5)
    [item] = aws.items("token#")
    assert item["fingerprint"]["S"] == vended.token.fingerprint  # still served
