"""GuardTable against a real moto server: what the guard shares between containers (remembered failures, the
hourly mint counters) round-trips through DynamoDB. The guard's rules: test_upstream_guard.py."""

from __future__ import annotations

from token_vending.upstream_guard import Cooldown, CooldownKind

from .conftest import START, Aws


def test_a_remembered_failure_round_trips_and_is_forgotten(aws: Aws) -> None:
    table = aws.guard_table()
    cooldown = Cooldown(CooldownKind.FAILING, START + 20, streak=3)
    table.remember_cooldown("demo", "v1", cooldown)

    assert table.cooldown("demo", "v1") == cooldown
    assert table.cooldown("demo", "v2") is None
    table.forget_cooldown("demo", "v1")
    assert table.cooldown("demo", "v1") is None


def test_mint_counters_count_to_their_limit_per_budget_and_clock_hour(aws: Aws) -> None:
    table = aws.guard_table()

    assert [table.count_mint("demo", 2) for _ in range(3)] == [1, 2, None]
    assert table.count_mint("other", 2) == 1
    aws.clock.advance(3600)
    assert table.count_mint("demo", 2) == 1
    [counter] = [item for item in aws.items("mints#demo#") if item["count"]["N"] == "1"]
    assert int(counter["ttl"]["N"]) > aws.clock()  # DynamoDB removes it after the hour
