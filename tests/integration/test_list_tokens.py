"""`make tokens`: the operator's listing of cached tokens, run as a separate process against the stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import Lambda, child_env

ROOT = Path(__file__).resolve().parents[2]


def list_tokens(lam: Lambda, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.list_tokens", *args], cwd=ROOT, env=child_env(lam.stack),
                          capture_output=True, text=True, timeout=60, check=False)


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
    assert header.split() == ["EXPIRES_AT", "LEFT", "APP", "SCOPE", "FINGERPRINT", "CREDENTIAL_ID", "SECRET_VERSION",
                              "RENEWAL"]
    assert token["fingerprint"] in row and token["access_token"] not in table.stdout

    missing = list_tokens(lam, "--table", "no-such-table")
    assert missing.returncode == 1
    assert "cannot read table no-such-table: ResourceNotFoundException" in missing.stderr
