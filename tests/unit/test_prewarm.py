"""The pre-warm's pure parts: the listed-token input and the per-key refresh threshold."""

from __future__ import annotations

from token_vending.prewarm import JITTER_SHARE, parse_prewarm_list, refresh_threshold
from token_vending.tokens import TokenKey

WEEK = 7 * 86_400


ROLE = "arn:aws:iam::111122223333:role/billing-service"


def test_listed_entries_are_normalized_like_api_input_and_deduplicated() -> None:
    targets, problems = parse_prewarm_list([
        {"app": "billing", "scope": "cx.queue-calls cx.agent-calls cx.agent-calls"},
        {"app": "billing", "scope": ["cx.agent-calls", "cx.queue-calls"]},
        {"app": "billing", "scope": "cx.agent-calls cx.queue-calls", "caller": ROLE},
        {"app": "support", "scope": "cx.agent-calls"},
    ])

    assert problems == []
    assert [(target.request.app, target.request.scope, target.caller) for target in targets] == [
        ("billing", "cx.agent-calls cx.queue-calls", None), ("billing", "cx.agent-calls cx.queue-calls", ROLE),
        ("support", "cx.agent-calls", None)]


def test_each_bad_entry_is_reported_with_its_position_and_the_rest_kept() -> None:
    targets, problems = parse_prewarm_list([
        {"app": "../secret", "scope": "cx.agent-calls"},
        {"app": "billing"},
        {"app": "billing", "scope": ""},
        {"app": "billing", "scope": "bad\\scope"},
        {"app": 7, "scope": "cx.agent-calls"},
        ["billing", "cx.agent-calls"],
        {"app": "billing", "scope": "cx.agent-calls", "caller": "billing-service"},
        {"app": "billing", "scope": "cx.agent-calls", "caller": 7},
        {"app": "billing", "scope": "cx.agent-calls"},
    ])

    assert [target.request.app for target in targets] == ["billing"]
    assert [problem.split(":")[0] for problem in problems] == [f"entry {index}" for index in range(8)]
    assert "app name must match" in problems[0]
    assert "at least one scope" in problems[2]
    assert "malformed scope token" in problems[3]
    assert "caller must be an IAM ARN" in problems[6] and "caller must be an IAM ARN" in problems[7]


def test_no_list_is_nothing_to_mint_and_a_non_list_is_one_problem() -> None:
    assert parse_prewarm_list(None) == ([], [])
    assert parse_prewarm_list([]) == ([], [])
    requests, problems = parse_prewarm_list({"app": "billing", "scope": "cx.agent-calls"})
    assert requests == [] and len(problems) == 1


def test_refresh_threshold_is_fixed_per_key_and_within_the_window() -> None:
    key = TokenKey("billing", "cx.agent-calls", "0123456789abcdef")

    threshold = refresh_threshold(key, WEEK)

    assert threshold == refresh_threshold(key, WEEK)  # a repeated run decides the same way
    assert WEEK <= threshold < WEEK * (1 + JITTER_SHARE)  # never below the setting: all of it is refreshed


def test_refresh_thresholds_of_tokens_minted_together_spread_over_the_window() -> None:
    keys = [TokenKey(f"app{n}", "cx.agent-calls", "0123456789abcdef") for n in range(2000)]
    fractions = [(refresh_threshold(key, WEEK) - WEEK) / (WEEK * JITTER_SHARE) for key in keys]

    # Ten equal slices of the margin each hold about a tenth of the keys: hourly runs share the work.
    per_slice = [sum(1 for fraction in fractions if n / 10 <= fraction < (n + 1) / 10) for n in range(10)]
    assert all(140 <= count <= 260 for count in per_slice), per_slice
