"""`make tokens`: the operator's listing of cached tokens, run as a separate process against the stack (AWS mode,
with moto as the account)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from .conftest import CALLER_HOLDER, CALLER_ROLE, Lambda, child_env

ROOT = Path(__file__).resolve().parents[2]


def list_tokens(lam: Lambda, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.list_tokens", *args], cwd=ROOT,
                          env={**child_env(lam.stack), **(env or {})}, capture_output=True, text=True, timeout=60,
                          check=False)


def test_lists_cached_tokens_soonest_expiry_first_without_the_tokens(lam: Lambda) -> None:
    later = lam.vend(scope="cx.agent-calls cx.queue-calls").body
    lam.stack.token_endpoint.expires_in = 3600
    sooner = lam.vend(scope="cx.agent-calls").body
    assert later and sooner

    result = list_tokens(lam, "--json")

    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(row["app"], row["scope"], row["fingerprint"]) for row in rows] == [
        ("demo", "cx.agent-calls", sooner["fingerprint"]),
        ("demo", "cx.agent-calls cx.queue-calls", later["fingerprint"]),
    ]
    assert [row["holder"] for row in rows] == [CALLER_HOLDER, CALLER_HOLDER]  # the calling role's own tokens
    assert rows[0]["expires_at"] == sooner["expires_at"]
    assert rows[0]["left"] in {"0h59m", "1h00m"}
    assert rows[0]["credential_id"] == rows[1]["credential_id"] and rows[0]["secret_version"]
    assert sooner["access_token"] not in result.stdout and later["access_token"] not in result.stdout


def test_prints_a_table_by_default_and_fails_clearly_without_a_table_name(lam: Lambda) -> None:
    token = lam.vend().body
    assert token

    table = list_tokens(lam)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split() == ["EXPIRES_AT", "LEFT", "MINTED", "APP", "HOLDER", "SCOPE", "FINGERPRINT",
                              "CREDENTIAL_ID", "SECRET_VERSION", "RENEWAL", "SERVED"]
    assert row.split()[3:5] == ["demo", CALLER_HOLDER]
    assert token["fingerprint"] in row and token["access_token"] not in table.stdout

    missing = list_tokens(lam, "--table", "no-such-table")
    assert missing.returncode == 1
    assert "cannot read table no-such-table: ResourceNotFoundException" in missing.stderr


def test_each_holder_has_its_own_row_and_a_token_the_app_shares_says_so(lam: Lambda) -> None:
    support_role = "arn:aws:iam::111122223333:role/support-service"
    lam.stack.add_app("demo", allowed_callers=[CALLER_ROLE, support_role])
    lam.stack.add_app("shared-app", allowed_callers=[CALLER_ROLE, support_role])
    secret = json.loads(lam.stack.client("secretsmanager").get_secret_value(
        SecretId="sangoma/token-vending/shared-app")["SecretString"])
    lam.stack.put_secret("shared-app", json.dumps({**secret, "tokens": "shared"}))
    billing = lam.vend(caller="arn:aws:sts::111122223333:assumed-role/billing-service/task-1").body
    support = lam.vend(caller="arn:aws:sts::111122223333:assumed-role/support-service/task-2").body
    lam.vend(app="shared-app", caller="arn:aws:sts::111122223333:assumed-role/support-service/task-2")
    assert billing and support

    rows = [json.loads(line) for line in list_tokens(lam, "--json").stdout.splitlines()]
    table = list_tokens(lam, "--app", "shared-app").stdout.splitlines()

    assert sorted((row["app"], row["holder"], row["fingerprint"]) for row in rows) == sorted([
        ("demo", CALLER_HOLDER, billing["fingerprint"]),
        ("demo", "arn:aws:sts::111122223333:assumed-role/support-service", support["fingerprint"]),
        ("shared-app", "(shared)", next(row["fingerprint"] for row in rows if row["app"] == "shared-app")),
    ])
    assert table[1].split()[3:5] == ["shared-app", "(shared)"]


def test_minted_is_when_the_token_was_fetched_from_the_token_endpoint(lam: Lambda) -> None:
    before = time.time()
    token = lam.vend().body
    after = time.time()
    assert token

    row = json.loads(list_tokens(lam, "--json").stdout)
    minted = datetime.strptime(row["minted"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()

    assert int(before) <= minted <= after


def test_app_narrows_the_list_and_an_empty_list_says_so(lam: Lambda) -> None:
    lam.stack.add_app("billing", allowed_callers=[CALLER_ROLE])
    lam.vend(app="billing")
    lam.vend(app="demo")

    billing = list_tokens(lam, "--json", "--app", "billing")
    nobody = list_tokens(lam, "--app", "nobody")

    assert [json.loads(line)["app"] for line in billing.stdout.splitlines()] == ["billing"]
    assert (nobody.returncode, nobody.stdout) == (0, "no cached tokens in sangoma-token-vending-local for app nobody\n")


def test_callers_needs_the_audit_log_in_aws_and_a_period_it_understands(lam: Lambda) -> None:
    local = list_tokens(lam, "--local", "--callers")
    bad_since = list_tokens(lam, "--callers", "--since", "7 days")

    assert local.returncode == 1
    assert local.stderr.startswith("error: --callers reads the function's audit log in CloudWatch Logs: AWS only")
    assert (bad_since.returncode, bad_since.stderr) == (1, "error: --since takes a number and a unit: 30m, 12h, 7d, "
                                                           "2w\n")


def test_the_table_and_the_log_group_come_from_the_stack(lam: Lambda) -> None:
    from devstack.template import resource
    from tools import list_tokens as tool
    from tools import targets

    template = {"Resources": {
        "TokenTable": {"Type": "AWS::DynamoDB::Table", "Properties": resource("TokenTable")["Properties"]},
        tool.LOG_GROUP_RESOURCE: {"Type": "AWS::Logs::LogGroup", "Properties": {}}},
        "Outputs": {tool.TABLE_OUTPUT: {"Value": {"Ref": "TokenTable"}}}}
    lam.stack.client("cloudformation").create_stack(StackName="vending-test", TemplateBody=json.dumps(template))

    listed = list_tokens(lam, "--stack", "vending-test", env={"TOKEN_TABLE_NAME": ""})
    target = targets.resolve(argparse.Namespace(local=False, region=None, profile=None, prefix=None,
                                                stack="vending-test"), needs_prefix=False)

    assert (listed.returncode, listed.stderr) == (0, "")
    assert listed.stdout.startswith("no cached tokens in vending-test-TokenTable-")
    assert targets.stack_resource(target, "vending-test", tool.LOG_GROUP_RESOURCE).startswith(
        "vending-test-TokenVendingLogGroup-")


def test_marks_the_entries_the_function_no_longer_serves(lam: Lambda) -> None:
    """After a switch of token mode or a narrower policy, the old entries look live by their expiry alone: SERVED says
    which the function still serves, as the scheduled run decides."""
    from .test_per_caller import share_tokens

    lam.stack.add_app("other", allowed_callers=[CALLER_ROLE])
    lam.vend()
    lam.vend(app="other")
    lam.vend(app="other", scope="cx.agent-calls")
    before = {(row["app"], row["scope"]): row["served"] for row in _rows(list_tokens(lam, "--json"))}
    share_tokens(lam.stack)  # demo now shares its tokens: the role's own token is no longer served
    other = json.loads(lam.stack.client("secretsmanager").get_secret_value(
        SecretId="sangoma/token-vending/other")["SecretString"])
    lam.stack.put_secret("other", json.dumps({**other, "allowed_scopes": ["cx.agent-calls"]}))  # one scope set out
    lam.new_container()  # one that reads the secrets as they are now
    lam.vend(caller="arn:aws:sts::111122223333:assumed-role/billing-service/s2")  # the shared token: served

    listed = list_tokens(lam, "--json")

    assert listed.returncode == 0, listed.stderr
    after = sorted((row["app"], row["holder"], row["scope"], row["served"]) for row in _rows(listed))
    assert set(before.values()) == {"yes"}
    assert after == [
        ("demo", "(shared)", "cx.agent-calls cx.queue-calls", "yes"),
        ("demo", CALLER_HOLDER, "cx.agent-calls cx.queue-calls", "no:now_shared"),
        ("other", CALLER_HOLDER, "cx.agent-calls", "yes"),
        ("other", CALLER_HOLDER, "cx.agent-calls cx.queue-calls", "no:scope_not_allowed"),
    ]
    # The scheduled run sees the same two as stale, and counts neither as skipped.
    answer = lam.invoke({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
    assert answer["stale"] == {"now_shared": 1, "scope_not_allowed": 1}
    assert answer["skipped"] == 2  # the two served ones, fresh


def _rows(result: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    return [json.loads(line) for line in result.stdout.splitlines()]
