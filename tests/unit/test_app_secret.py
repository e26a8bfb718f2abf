"""`tools.apps validate`: a secret document is checked before it is stored; findings name fields, never values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tools.app_secret import check_secret

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "app-secret.json"
# Distinctive values: none may ever appear in what the tool prints.
CLIENT_ID = "billing-client-9f2e"
CLIENT_SECRET = "cs_TOPSECRET_4b8d1c"
ROLE = "arn:aws:iam::111122223333:role/billing-service"


def document(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                            "allowed_scopes": ["cx.agent-calls", "cx.queue-calls"], "allowed_callers": [ROLE]}
    for name, value in changes.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def findings_of(data: Any) -> list[str]:
    return [str(finding) for finding in check_secret(data if isinstance(data, str) else json.dumps(data))]


def test_the_example_in_examples_is_valid_without_warnings() -> None:
    assert findings_of(EXAMPLE.read_text()) == []


# Each malformed document, and the one error it must produce (field named, no value).
MALFORMED = [
    pytest.param("{not json", "error: secret: not valid JSON (Expecting property name enclosed in double quotes at "
                              "line 1, column 2)", id="not-json"),
    pytest.param(json.dumps([CLIENT_SECRET]), "error: secret: must be a JSON object", id="not-an-object"),
    pytest.param(document(client_id=None), "error: client_id: must be a non-empty string", id="no-client-id"),
    pytest.param(document(client_id=""), "error: client_id: must be a non-empty string", id="empty-client-id"),
    pytest.param(document(client_secret=12345), "error: client_secret: must be a non-empty string",
                 id="numeric-secret"),
    pytest.param(document(client_secret=CLIENT_SECRET + "\u20ac"),
                 "error: client_secret: holds a character outside Latin-1", id="secret-not-latin-1"),
    pytest.param(document(client_secret=CLIENT_SECRET + "\n"),
                 "error: client_secret: holds a control character", id="secret-line-break"),
    pytest.param(document(client_id=CLIENT_ID + ":x"), "error: client_id: holds ':'", id="colon-in-client-id"),
    pytest.param(document(allowed_scopes="cx.agent-calls"), "error: allowed_scopes: must be a list of strings",
                 id="scopes-not-a-list"),
    pytest.param(document(allowed_scopes=["cx.agent-calls", 7]), "error: allowed_scopes[1]: must be a string",
                 id="scope-not-a-string"),
    pytest.param(document(allowed_scopes=["cx.agent-calls cx.queue-calls"]),
                 "error: allowed_scopes[0]: holds a space: list each scope as an entry of its own",
                 id="two-scopes-in-one-entry"),
    pytest.param(document(allowed_scopes=['cx."quoted"']), "error: allowed_scopes[0]: not a scope token",
                 id="scope-with-quote"),
    pytest.param(document(allowed_scopes=["x" * 257]), "error: allowed_scopes[0]: not a scope token",
                 id="scope-too-long"),
    pytest.param(document(allowed_callers={"role": ROLE}), "error: allowed_callers: must be a list of strings",
                 id="callers-not-a-list"),
    pytest.param(document(allowed_callers=[ROLE, "billing-service"]),
                 "error: allowed_callers[1]: not an IAM role ARN, IAM user ARN or 12-digit account ID",
                 id="caller-bare-name"),
    pytest.param(document(allowed_callers=["arn:aws:iam::111122223333:role/*"]),
                 "error: allowed_callers[0]: wildcards match nothing here", id="caller-wildcard"),
    pytest.param(document(allowed_callers=["arn:aws:iam::111122223333:group/billing"]),
                 "error: allowed_callers[0]: not an IAM role ARN", id="caller-group"),
    pytest.param(document(allowed_callers=["11112222333"]), "error: allowed_callers[0]: not an IAM role ARN",
                 id="caller-11-digit-account"),
    pytest.param(document(allowed_callers=[ROLE + " "]), "error: allowed_callers[0]: begins or ends with whitespace",
                 id="caller-trailing-space"),
    pytest.param(document(tokens="per-caller"), 'error: tokens: must be "per_caller" or "shared" (absent means '
                 'per_caller)', id="tokens-misspelt"),
    pytest.param(document(tokens="SHARED"), 'error: tokens: must be "per_caller" or "shared"', id="tokens-upper"),
    pytest.param(document(tokens=["shared"]), 'error: tokens: must be "per_caller" or "shared"', id="tokens-list"),
    pytest.param(json.dumps(document()).replace("{", '{"tokens": null, ', 1), 'error: tokens: must be "per_caller" '
                 'or "shared"', id="tokens-null"),
    pytest.param(document(tokens=CLIENT_SECRET), 'error: tokens: must be "per_caller" or "shared"',
                 id="tokens-holds-the-secret"),  # pasted into the wrong field: never echoed
    pytest.param('{"client_id": "a", "client_secret": "' + "x" * 70_000 + '"}',
                 "error: secret: larger than the 65,536 bytes Secrets Manager stores", id="too-large"),
]


@pytest.mark.parametrize(("data", "expected"), MALFORMED)
def test_a_malformed_secret_is_refused_with_the_field_named(data: Any, expected: str) -> None:
    findings = findings_of(data)

    errors = [finding for finding in findings if finding.startswith("error: ")]
    assert len(errors) == 1, findings
    assert errors[0].startswith(expected)


WARNED = [
    pytest.param(document(allowed_callers=[ROLE, "444455556666"]),
                 "warning: allowed_callers[1]: an account ID admits every IAM principal of that account",
                 id="account-wide"),
    pytest.param(document(allowed_callers=["arn:aws:sts::111122223333:assumed-role/billing-service/i-0abc"]),
                 "warning: allowed_callers[0]: an assumed-role session ARN is no narrower than its role: whoever "
                 "may assume the role chooses the session name", id="session-arn"),
    pytest.param(document(allowed_callers=[]), "warning: allowed_callers: empty: the app allows no caller",
                 id="no-callers"),
    pytest.param(document(allowed_scopes=None), "warning: allowed_scopes: missing: the app allows no scope",
                 id="no-scopes"),
    pytest.param(document(allowed_scopes=["cx.agent-calls", "cx.agent-calls"]),
                 "warning: allowed_scopes[1]: repeats an earlier entry", id="repeated-scope"),
    pytest.param(document(client_secret=" " + CLIENT_SECRET),
                 "warning: client_secret: begins or ends with whitespace", id="secret-space"),
    pytest.param(document(client_secret=CLIENT_SECRET + "+x"), "warning: client_secret: holds '%', '+' or a "
                 "non-ASCII character: sent raw in HTTP Basic auth", id="secret-plus"),
    pytest.param(document(client_id=CLIENT_ID + "%41"), "warning: client_id: holds '%', '+' or a non-ASCII "
                 "character", id="client-id-percent"),
    pytest.param(document(client_secret=CLIENT_SECRET + "\u00e9"), "warning: client_secret: holds '%', '+' or a "
                 "non-ASCII character", id="secret-latin-1-not-ascii"),
    pytest.param(document(client_sercet=CLIENT_SECRET),
                 "warning: client_sercet: not a field the function reads (ignored)", id="misspelt-field"),
    pytest.param('{"client_id": "a", "client_secret": "b", "client_secret": "c", "allowed_scopes": ["s"], '
                 f'"allowed_callers": ["{ROLE}"]}}',
                 "warning: client_secret: appears more than once; only the last one counts", id="duplicate-key"),
]


@pytest.mark.parametrize(("data", "expected"), WARNED)
def test_a_questionable_secret_is_accepted_with_a_warning(data: Any, expected: str) -> None:
    findings = findings_of(data)

    assert [finding for finding in findings if finding.startswith("error")] == []
    assert any(finding.startswith(expected) for finding in findings), findings


@pytest.mark.parametrize("mode", ["per_caller", "shared"])
def test_both_token_modes_are_valid_and_the_function_reads_them(mode: str) -> None:
    from token_vending.app_config import parse_app_config

    assert findings_of(document(tokens=mode)) == []
    assert parse_app_config("billing", json.dumps(document(tokens=mode)), "v1").tokens == mode


def test_the_function_refuses_every_token_mode_the_tool_refuses() -> None:
    from token_vending.app_config import parse_app_config
    from token_vending.errors import ConfigurationError

    for param in MALFORMED:
        if param.id.startswith("tokens-"):
            data = param.values[0]
            with pytest.raises(ConfigurationError) as refused:
                parse_app_config("billing", data if isinstance(data, str) else json.dumps(data), "v1")
            assert refused.value.detail.startswith("tokens ")  # the field, never the value


def test_user_arns_role_paths_and_other_partitions_are_valid_callers() -> None:
    callers = ["arn:aws:iam::111122223333:user/ops/alice", "arn:aws:iam::111122223333:role/service-role/x/billing",
               "arn:aws-us-gov:iam::111122223333:role/billing", "arn:aws-cn:iam::111122223333:user/bob"]

    assert findings_of(document(allowed_callers=callers)) == []


def test_the_function_accepts_every_document_the_tool_accepts() -> None:
    from token_vending.app_config import parse_app_config

    for data, _ in [(param.values[0], None) for param in WARNED]:
        text = data if isinstance(data, str) else json.dumps(data)
        parse_app_config("billing", text, "v1")  # raises if the function would answer 500


def test_no_output_of_validate_ever_holds_a_credential(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every malformed and questionable document above, through the command's entry point: the values never show."""
    from tools import apps

    for index, param in enumerate([*MALFORMED, *WARNED]):
        data = param.values[0]
        path = tmp_path / f"secret-{index}.json"
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        assert apps.main(["validate", str(path)]) == (1 if param in MALFORMED else 0)

    printed = capsys.readouterr()
    assert "error: client_secret: holds a control character" in printed.out
    for value in (CLIENT_SECRET, CLIENT_ID, "TOPSECRET"):
        assert value not in printed.out + printed.err


@pytest.mark.process
def test_validate_exits_1_on_an_error_and_0_on_warnings_alone(tmp_path: Path) -> None:
    bad, questionable = tmp_path / "bad.json", tmp_path / "questionable.json"
    bad.write_text(json.dumps(document(client_secret="")))
    questionable.write_text(json.dumps(document(allowed_callers=["444455556666"])))

    def validate(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tools.apps", "validate", str(path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False)

    refused, accepted = validate(bad), validate(questionable)
    assert (refused.returncode, refused.stdout) == (1, f"{bad}: error: client_secret: must be a non-empty string\n")
    assert accepted.returncode == 0
    assert accepted.stdout.splitlines() == [
        f"{questionable}: warning: allowed_callers[0]: an account ID admits every IAM principal of that account",
        f"{questionable}: valid (2 scopes, 1 caller)",
    ]


@pytest.mark.process
def test_make_apps_validate_warns_about_credentials_a_form_decoding_server_would_read_otherwise(
        tmp_path: Path) -> None:
    secret = CLIENT_SECRET + "+/%2B"
    path = tmp_path / "plus.json"
    path.write_text(json.dumps(document(client_secret=secret)))

    result = subprocess.run(["make", "--no-print-directory", "apps", f"ARGS=validate {path}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 0, result.stderr  # a warning, not a refusal: Sangoma documents raw credentials
    assert f"{path}: warning: client_secret: holds '%', '+' or a non-ASCII character" in result.stdout
    assert f"{path}: valid (2 scopes, 1 caller)" in result.stdout
    assert secret not in result.stdout + result.stderr and CLIENT_SECRET not in result.stdout + result.stderr
