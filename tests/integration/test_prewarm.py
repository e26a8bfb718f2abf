"""The scheduled pre-warm end to end: the real handler invoked as EventBridge does, against
the moto server and the stub token endpoint."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from devstack.stub_token_endpoint import DEFAULT_EXPIRES_IN

from .conftest import CALLER_ROLE, SCOPES, Lambda

EVENTS = Path(__file__).resolve().parents[2] / "events"
HOUR = 3600


def scheduled_event() -> dict[str, Any]:
    return dict(json.loads((EVENTS / "scheduled.json").read_text()))


def answer_of(lam: Lambda, prewarm: list[Any] | None = None) -> dict[str, Any]:
    """One scheduled run's whole answer (what `make invoke` prints): the bare scheduled event, or the rule's Input
    when a list is given."""
    event = scheduled_event() if prewarm is None else {"prewarm": prewarm}
    return lam.invoke(event)


def counts(answer: dict[str, Any]) -> dict[str, int]:
    return {outcome: answer[outcome] for outcome in ("refreshed", "minted", "skipped", "failed")}


def run(lam: Lambda, prewarm: list[Any] | None = None) -> dict[str, int]:
    """One scheduled run's counts."""
    return counts(answer_of(lam, prewarm))


def summary(refreshed: int = 0, minted: int = 0, skipped: int = 0, failed: int = 0) -> dict[str, int]:
    return {"refreshed": refreshed, "minted": minted, "skipped": skipped, "failed": failed}


def metric(emf: dict[str, Any], name: str) -> float:
    """A metric's total in one EMF line (Powertools writes a list when a metric was added twice)."""
    value = emf[name]
    return float(sum(value)) if isinstance(value, list) else float(value)


@pytest.fixture
def expiring(lam: Lambda, settings_env: Any) -> Lambda:
    """Tokens that live an hour, refreshed when less than two hours are left: every cached token is due."""
    settings_env(REFRESH_BEFORE_SECONDS=2 * HOUR)
    lam.stack.token_endpoint.expires_in = HOUR
    return lam


def test_the_event_files_match_what_eventbridge_sends() -> None:
    bare = scheduled_event()
    assert bare["source"] == "aws.events"
    assert bare["detail-type"] == "Scheduled Event"
    listed = json.loads((EVENTS / "prewarm.json").read_text())
    assert set(listed) == {"prewarm"}
    assert all(set(entry) == {"app", "scope", "caller"} for entry in listed["prewarm"])


def test_bare_run_refreshes_a_token_close_to_expiry_so_callers_never_wait(expiring: Lambda) -> None:
    lam = expiring
    old = lam.vend().body
    assert old is not None and old["expires_in"] <= HOUR
    lam.stack.token_endpoint.expires_in = DEFAULT_EXPIRES_IN

    assert run(lam) == summary(refreshed=1)

    assert lam.stack.token_endpoint.request_count == 2
    lam.new_container()
    new = lam.vend().body
    assert new is not None
    assert new["access_token"] != old["access_token"]
    assert new["expires_in"] > DEFAULT_EXPIRES_IN - 60
    assert lam.stack.token_endpoint.request_count == 2  # the vend was served from the table


def test_bare_run_leaves_fresh_tokens_alone(lam: Lambda) -> None:
    lam.vend()

    assert run(lam) == summary(skipped=1)
    assert lam.stack.token_endpoint.request_count == 1


def test_a_token_the_endpoint_gives_back_unchanged_is_not_fetched_again_every_run(expiring: Lambda) -> None:
    lam = expiring
    lam.stack.token_endpoint.same_token = True  # "renewed only once it is expired"
    first = lam.vend().body

    assert run(lam) == summary(skipped=1)  # asked once, got the same token back
    assert lam.stack.token_endpoint.request_count == 2
    assert run(lam) == summary(skipped=1)
    assert run(lam) == summary(skipped=1)
    assert lam.stack.token_endpoint.request_count == 2  # remembered: not asked again before it expires

    lam.new_container()
    again = lam.vend().body
    assert first and again and again["access_token"] == first["access_token"]
    assert lam.stack.token_endpoint.request_count == 2


def test_listed_tokens_are_minted_and_entries_that_can_never_be_served_fail(lam: Lambda, captured_logs: Any) -> None:
    listed = [
        {"app": "demo", "scope": "cx.queue-calls cx.agent-calls", "caller": CALLER_ROLE},
        {"app": "demo", "scope": "cx.agent-calls", "caller": CALLER_ROLE},
        {"app": "demo", "scope": "cx.agent-calls", "caller": CALLER_ROLE},  # a duplicate is one token
        {"app": "../other-secret", "scope": SCOPES},  # bad app name
        {"app": "demo"},  # no scope
        {"app": "demo", "scope": "cx.agent-calls \"quoted\""},  # malformed scope token
        "demo",  # not an object
        {"app": "ghost", "scope": SCOPES},  # no such app
        {"app": "demo", "scope": "cx.admin", "caller": CALLER_ROLE},  # scope the app does not allow
    ]

    answer = answer_of(lam, listed)

    assert counts(answer) == summary(minted=2, failed=6)
    assert answer["reasons"] == {"failed:bad_entry": 4, "failed:unknown_app": 1, "failed:scope_not_allowed": 1}

    assert sorted(received.scope or "" for received in lam.stack.token_endpoint.received) == \
        ["cx.agent-calls", SCOPES]
    logs = captured_logs()
    assert logs.count("pre-warm entry can never be served") == 6
    # Minted into the shared cache: a cold container's vends need no upstream call.
    lam.new_container()
    assert lam.vend(scope=SCOPES).status == 200
    assert lam.vend(scope="cx.agent-calls").status == 200
    assert lam.stack.token_endpoint.request_count == 2
    # Listed and already cached: nothing to mint again.
    assert run(lam, listed[:2]) == summary(skipped=2)
    assert lam.stack.token_endpoint.request_count == 2


def test_a_failure_amid_successes_does_not_stop_the_run(expiring: Lambda) -> None:
    lam = expiring
    lam.vend()  # demo's token, due for refresh
    lam.stack.token_endpoint.expires_in = DEFAULT_EXPIRES_IN
    # billing's credentials are unknown to the endpoint: it answers invalid_client.
    lam.stack.add_app("billing", allowed_callers=[CALLER_ROLE], register_with_endpoint=False)
    listed = [{"app": "billing", "scope": SCOPES, "caller": CALLER_ROLE},
              {"app": "demo", "scope": "cx.agent-calls", "caller": CALLER_ROLE}]

    assert run(lam, listed) == summary(refreshed=1, minted=1, failed=1)
    assert lam.stack.token_endpoint.request_count == 4


def test_entries_of_rotated_credentials_are_left_to_expire(expiring: Lambda) -> None:
    lam = expiring
    lam.vend()
    lam.stack.add_app("demo", allowed_callers=[CALLER_ROLE])  # new client secret: a new credential

    answer = answer_of(lam)

    assert counts(answer) == summary()  # not work the run could do: not counted
    assert answer["stale"] == {"rotated_credentials": 1}
    assert lam.stack.token_endpoint.request_count == 1


def test_a_run_that_is_out_of_time_leaves_the_rest_for_the_next_run(expiring: Lambda) -> None:
    from token_vending import container, prewarm

    lam = expiring
    lam.vend()

    times = iter([28_000])  # the run starts with the whole timeout, then it is nearly spent

    assert counts(prewarm.run(scheduled_event(), container.current(), lambda: next(times, 5_000))) == \
        summary(skipped=1)
    assert lam.stack.token_endpoint.request_count == 1
    assert counts(prewarm.run(scheduled_event(), container.current(), lambda: 28_000)) == summary(refreshed=1)


def test_a_stand_in_context_without_a_real_clock_does_not_stop_the_run(expiring: Lambda) -> None:
    from token_vending import container, prewarm

    expiring.vend()

    assert counts(prewarm.run(scheduled_event(), container.current(), lambda: 5)) == summary(refreshed=1)


def test_a_prewarm_racing_a_vend_makes_one_upstream_request(lam: Lambda) -> None:
    from token_vending import prewarm
    from token_vending.container import Container

    lam.stack.token_endpoint.delay = 0.5
    start = threading.Barrier(2)
    results: dict[str, Any] = {}

    def scheduled() -> None:
        start.wait()
        # A container of its own: its own clients and memory, as a separate Lambda container has.
        results["prewarm"] = prewarm.run({"prewarm": [{"app": "demo", "scope": SCOPES, "caller": CALLER_ROLE}]},
                                         Container())

    def vend() -> None:
        start.wait()
        results["vend"] = lam.vend()

    threads = [threading.Thread(target=scheduled), threading.Thread(target=vend)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert lam.stack.token_endpoint.request_count == 1
    answer = results["vend"]
    assert answer.status == 200
    counts = results["prewarm"]
    # Whichever took the lease fetched; the other was served the token it stored.
    assert counts["minted"] + counts["skipped"] == 1 and counts["failed"] == 0
    lam.new_container()
    assert lam.vend().body["fingerprint"] == answer.body["fingerprint"]


def test_two_deliveries_of_one_scheduled_event_refresh_once(expiring: Lambda) -> None:
    from token_vending import prewarm
    from token_vending.container import Container

    lam = expiring
    lam.vend()
    lam.stack.token_endpoint.expires_in = DEFAULT_EXPIRES_IN
    lam.stack.token_endpoint.delay = 0.5
    start = threading.Barrier(2)
    outcomes: list[dict[str, Any]] = []

    def deliver() -> None:
        start.wait()
        outcomes.append(prewarm.run(scheduled_event(), Container()))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert lam.stack.token_endpoint.request_count == 2  # the vend's, and one refresh
    assert sorted(outcome["refreshed"] for outcome in outcomes) == [0, 1]
    assert all(outcome["failed"] == 0 for outcome in outcomes)


def test_run_logs_its_summary_and_emits_metrics_without_any_token(expiring: Lambda, captured_logs: Any) -> None:
    lam = expiring
    token = lam.vend().body["access_token"]
    lam.stack.token_endpoint.expires_in = DEFAULT_EXPIRES_IN
    captured_logs()  # only what the run writes from here on

    assert run(lam, [{"app": "demo", "scope": "cx.agent-calls", "caller": CALLER_ROLE}, {"app": "bad app"}]) == \
        summary(refreshed=1, minted=1, failed=1)

    lines = [json.loads(line) for line in captured_logs().splitlines() if line.startswith("{")]
    [line] = [line for line in lines if line.get("message") == "pre-warm run"]
    assert line["summary"] == summary(refreshed=1, minted=1, failed=1)
    assert line["reasons"] == {"failed:bad_entry": 1}
    [emf] = [line for line in lines if "_aws" in line]
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "SangomaTokenVending"
    assert [metric(emf, name) for name in ("PrewarmRefreshed", "PrewarmMinted", "PrewarmSkipped",
                                           "PrewarmFailed")] == [1, 1, 0, 1]
    assert metric(emf, "CachedTokens") == 2
    assert DEFAULT_EXPIRES_IN - 60 < metric(emf, "SoonestTokenExpiry") <= DEFAULT_EXPIRES_IN
    assert metric(emf, "UpstreamRequests") == 2
    text = json.dumps(lines)
    assert token not in text
    for received in lam.stack.token_endpoint.received:
        assert (received.client_secret or "") not in text


def test_a_run_that_cannot_read_the_table_fails_so_lambda_retries_it(lam: Lambda, monkeypatch: pytest.MonkeyPatch,
                                                                     captured_logs: Any) -> None:
    from token_vending.prewarm import PrewarmAborted

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    lam.new_container()

    with pytest.raises(PrewarmAborted):
        run(lam)

    lines = [json.loads(line) for line in captured_logs().splitlines() if line.startswith("{")]
    [emf] = [line for line in lines if "_aws" in line]
    assert metric(emf, "PrewarmFailed") == 1


def test_a_token_whose_scope_set_the_policy_no_longer_allows_is_left_to_expire(expiring: Lambda) -> None:
    lam = expiring
    lam.vend(scope=SCOPES)
    lam.vend(scope="cx.agent-calls")
    lam.stack.add_app("demo", allowed_callers=[CALLER_ROLE], allowed_scopes=["cx.agent-calls"],
                      client_id="demo-client", client_secret=lam.stack.token_endpoint.clients["demo-client"])
    lam.stack.token_endpoint.expires_in = DEFAULT_EXPIRES_IN

    answer = answer_of(lam)

    assert counts(answer) == summary(refreshed=1)
    assert answer["stale"] == {"scope_not_allowed": 1}
    assert [received.scope for received in lam.stack.token_endpoint.received][2:] == ["cx.agent-calls"]


def test_an_app_that_allows_no_caller_any_more_is_not_refreshed(expiring: Lambda, captured_logs: Any) -> None:
    lam = expiring
    lam.vend()
    lam.stack.add_app("demo", allowed_callers=[], client_id="demo-client",
                      client_secret=lam.stack.token_endpoint.clients["demo-client"])

    assert run(lam) == summary()
    assert run(lam, [{"app": "demo", "scope": "cx.agent-calls", "caller": CALLER_ROLE}]) == summary(failed=1)
    assert lam.stack.token_endpoint.request_count == 1
    runs = [json.loads(line) for line in captured_logs().splitlines() if '"pre-warm run"' in line]
    assert [run["reasons"] for run in runs] == [{}, {"failed:caller_not_admitted": 1}]
    assert [run["stale"] for run in runs] == [{"caller_not_admitted": 1}] * 2


def test_a_scheduled_event_with_a_minimal_context_object(expiring: Lambda) -> None:
    from token_vending.app import lambda_handler

    class MinimalContext:  # what many test harnesses pass: no clock at all
        function_name = "TokenVendingFunction"
        memory_limit_in_mb = 512
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:TokenVendingFunction"
        aws_request_id = "minimal"

    expiring.vend()

    assert counts(lambda_handler(scheduled_event(), MinimalContext())) == summary(refreshed=1)


# -- what the run tells the operator: audit records, entries that can never be served, stale entries -----------

SCHEDULE_RECORD = {"audit", "caller", "charged_to", "app", "scope", "holder", "outcome"}


def schedule_records(logs: str) -> list[dict[str, Any]]:
    lines = (json.loads(text) for text in logs.splitlines() if text.startswith("{"))
    return [line for line in lines if line.get("audit") == "schedule"]


def test_each_mint_the_run_asks_for_leaves_one_audit_record_without_the_token(expiring: Lambda,
                                                                            captured_logs: Any) -> None:
    lam = expiring
    lam.vend()  # the role's token, due for refresh
    lam.stack.token_endpoint.expires_in = DEFAULT_EXPIRES_IN
    lam.stack.add_app("billing", allowed_callers=[CALLER_ROLE], register_with_endpoint=False)  # invalid_client
    captured_logs()

    run(lam, [{"app": "demo", "scope": "cx.agent-calls", "caller": CALLER_ROLE},
              {"app": "billing", "scope": SCOPES, "caller": CALLER_ROLE}])

    logs = captured_logs()
    records = sorted(schedule_records(logs), key=lambda record: (record["app"], record["scope"]))
    holder = "arn:aws:sts::111122223333:assumed-role/billing-service"
    assert [(record["app"], record["scope"], record["outcome"]) for record in records] == [
        ("billing", SCOPES, "upstream_error"), ("demo", "cx.agent-calls", "ok"), ("demo", SCOPES, "ok")]
    for record in records:
        assert (record["caller"], record["charged_to"], record["holder"]) == ("schedule", "schedule", holder)
        minted = record["outcome"] == "ok"
        assert set(record) >= SCHEDULE_RECORD | ({"source", "fingerprint"} if minted else set())
        assert ("source" in record, "fingerprint" in record) == (minted, minted)
    lam.new_container()
    assert lam.vend(scope="cx.agent-calls").body["fingerprint"] == records[1]["fingerprint"]
    for received in lam.stack.token_endpoint.received:
        assert (received.client_secret or "") not in logs
    assert "sgm_" not in logs  # the stub's tokens start so


def test_a_mint_the_app_budget_refuses_is_audited_with_the_budget(lam: Lambda, settings_env: Any,
                                                                  captured_logs: Any) -> None:
    from .test_minting_bounds import spend_the_budget

    settings_env(MAX_MINTS_PER_APP_PER_HOUR=1)
    spend_the_budget(lam.stack, "demo", 1)

    answer = answer_of(lam, [{"app": "demo", "scope": SCOPES, "caller": CALLER_ROLE}])

    assert answer["reasons"] == {"skipped:mint_limit_reached": 1}
    [record] = schedule_records(captured_logs())
    assert record["outcome"] == "mint_limit_reached" and record["budget"] == "app"
    assert "source" not in record and "fingerprint" not in record  # nothing was minted


def test_listed_entries_that_can_never_be_served_fail_so_the_alarm_fires(lam: Lambda, captured_logs: Any) -> None:
    listed = [{"app": "demo", "scope": SCOPES},  # the app gives each caller its own token: whose?
              {"app": "ghost", "scope": SCOPES, "caller": CALLER_ROLE},  # no such app
              {"app": "demo", "scope": SCOPES, "caller": "arn:aws:iam::111122223333:role/stranger"}]  # not admitted

    answer = answer_of(lam, listed)

    assert counts(answer) == summary(failed=3)
    assert answer["reasons"] == {"failed:caller_not_admitted": 1, "failed:no_caller": 1, "failed:unknown_app": 1}
    lines = [json.loads(line) for line in captured_logs().splitlines() if line.startswith("{")]
    [emf] = [line for line in lines if "_aws" in line]
    assert metric(emf, "PrewarmFailed") == 3  # PrewarmFailuresAlarm: PrewarmFailed >= 1 in the hour
    assert lam.stack.token_endpoint.request_count == 0
    assert schedule_records(json.dumps(lines)) == []  # nothing was asked for


def test_entries_of_a_mode_the_app_no_longer_uses_are_stale_not_skipped_every_run(lam: Lambda) -> None:
    from .test_per_caller import share_tokens

    lam.vend()  # the role's own token
    share_tokens(lam.stack)  # the app now shares its tokens: the role's entry is no longer served

    answers = [answer_of(lam), answer_of(lam)]

    for answer in answers:
        assert counts(answer) == summary()  # neither skipped nor failed, run after run
        assert answer["stale"] == {"now_shared": 1}
    assert lam.stack.token_endpoint.request_count == 1
