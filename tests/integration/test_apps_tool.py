"""`tools.apps` against the local stack (--local, through .local-stack.json) and in AWS mode (moto standing in for
the account): what it stores, what it prints, and that the function agrees with it."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack import local_state
from devstack.local_aws import REGION
from devstack.stack import LocalStack
from tools import apps

from .conftest import CALLER_ROLE, CALLER_SESSION, Lambda

CLIENT_SECRET = "cs_onboarded_SECRET_7c1d"
OTHER_ACCOUNT = "444455556666"


def secret_document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"client_id": "billing-client", "client_secret": CLIENT_SECRET,
                                "allowed_scopes": ["cx.agent-calls", "cx.queue-calls"],
                                "allowed_callers": [CALLER_ROLE]}
    document.update(changes)
    return document


class Apps:
    """`python -m tools.apps ... --local` in this process: (exit status, stdout, stderr)."""

    def __init__(self, stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.stack, self.tmp_path, self.capsys = stack, tmp_path, capsys

    def file(self, document: Any, name: str = "secret.json") -> str:
        path = self.tmp_path / name
        path.write_text(document if isinstance(document, str) else json.dumps(document))
        return str(path)

    def __call__(self, *args: str, local: bool = True) -> tuple[int, str, str]:
        self.capsys.readouterr()
        out = io.StringIO()
        code = apps.main([*args, *(["--local"] if local else [])], out=out)
        return code, out.getvalue(), self.capsys.readouterr().err

    def secret(self, app: str = "billing") -> dict[str, Any]:
        return self.stack.client("secretsmanager").describe_secret(SecretId=f"sangoma/token-vending/{app}")  # type: ignore[no-any-return]


@pytest.fixture
def run_apps(lam: Lambda, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Apps]:
    """The local stack as a running `make serve` would announce it in .local-stack.json."""
    moto_port = int(lam.stack.moto.url.rsplit(":", 1)[1])
    token_port = int(lam.stack.token_endpoint.url.split(":")[2].split("/")[0])
    written = local_state.write(local_state.LocalState(moto_port=moto_port, token_port=token_port, gateway_port=0,
                                                       region=REGION, pid=os.getpid()))
    yield Apps(lam.stack, tmp_path, capsys)
    local_state.remove(os.getpid(), written)


# -- put, show, list --------------------------------------------------------------------------------


def test_put_creates_the_secret_with_tags_and_the_app_vends(run_apps: Apps, lam: Lambda) -> None:
    code, out, _ = run_apps("put", "billing", run_apps.file(secret_document()))

    assert code == 0
    assert out.startswith("created sangoma/token-vending/billing (version ")
    described = run_apps.secret()
    assert {tag["Key"]: tag["Value"] for tag in described["Tags"]} == {
        "managed-by": "sangoma-token-vending", "app": "billing"}
    lam.stack.token_endpoint.clients["billing-client"] = CLIENT_SECRET
    assert lam.vend(app="billing").status == 200


def test_show_prints_the_policy_and_never_the_credentials(run_apps: Apps) -> None:
    run_apps("put", "billing", run_apps.file(secret_document(allowed_callers=[CALLER_ROLE, OTHER_ACCOUNT])))

    code, out, _ = run_apps("show", "billing")

    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "app:           billing"
    assert lines[1].startswith("secret:        sangoma/token-vending/billing in the local stack of make serve")
    assert "tags:          app=billing managed-by=sangoma-token-vending" in lines
    assert out.split("allowed_scopes:\n")[1].split("allowed_callers:\n") == [
        "  cx.agent-calls\n  cx.queue-calls\n",
        f"  {CALLER_ROLE}  role: every session of the role\n"
        f"  {OTHER_ACCOUNT.ljust(len(CALLER_ROLE))}  account: every IAM principal of the account\n"
        "stored secret: warning: allowed_callers[1]: an account ID admits every IAM principal of that account\n",
    ]
    assert CLIENT_SECRET not in out and "billing-client" not in out


def test_show_prints_the_token_mode_and_that_per_caller_is_the_default(run_apps: Apps) -> None:
    run_apps("put", "billing", run_apps.file(secret_document()))
    run_apps("put", "support", run_apps.file(secret_document(tokens="shared")))
    run_apps("put", "ledger", run_apps.file(secret_document(tokens="per_caller")))

    shown = {app: run_apps("show", app)[1].splitlines() for app in ("billing", "support", "ledger")}

    assert ('tokens:        per_caller (the default: the secret has no "tokens" field): each caller has tokens of '
            "its own, shared only by the sessions of one role") in shown["billing"]
    assert "tokens:        shared: every allowed caller is given the same token per scope set" in shown["support"]
    assert ("tokens:        per_caller: each caller has tokens of its own, shared only by the sessions of one role"
            in shown["ledger"])


def test_an_unknown_token_mode_is_refused_by_put_and_named_by_show_as_the_function_refuses_it(
        run_apps: Apps, lam: Lambda) -> None:
    mode = "per-caller-" + CLIENT_SECRET  # a distinctive value: it must never be printed
    code, refused, _ = run_apps("put", "billing", run_apps.file(secret_document(tokens=mode)))
    run_apps.stack.put_secret("billing", json.dumps(secret_document(tokens=mode)))  # stored around the tool
    run_apps.stack.token_endpoint.clients["billing-client"] = CLIENT_SECRET

    shown = run_apps("show", "billing")[1]
    answer = lam.vend(app="billing")

    assert code == 1
    assert 'error: tokens: must be "per_caller" or "shared" (absent means per_caller)' in refused
    assert "the function answers 500 internal_error for this app:\n" in shown
    assert 'stored secret: error: tokens: must be "per_caller" or "shared"' in shown
    assert (answer.status, answer.error) == (500, "internal_error")
    assert mode not in refused + shown and CLIENT_SECRET not in refused + shown


def test_show_of_a_broken_secret_says_what_the_function_answers_without_values(run_apps: Apps) -> None:
    run_apps.stack.put_secret("billing", json.dumps({"client_id": "billing-client", "client_secret": CLIENT_SECRET,
                                                     "allowed_callers": CALLER_ROLE}))

    code, out, _ = run_apps("show", "billing")

    assert code == 0
    assert "the function answers 500 internal_error for this app:\n" in out
    assert "stored secret: error: allowed_callers: must be a list of strings" in out
    assert CLIENT_SECRET not in out


def test_list_shows_every_app_under_the_prefix(run_apps: Apps) -> None:
    run_apps("put", "billing", run_apps.file(secret_document()))
    run_apps.stack.put_secret("Bad.Name", "{}")  # stored by hand: not a name the API accepts

    code, out, err = run_apps("list")

    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["APP", "CHANGED", "MANAGED", "STATUS"]
    assert [(row[0], row[-1]) for row in rows[1:]] == [("Bad.Name", "accepts"), ("billing", "yes"), ("demo", "no")]
    assert err.startswith("apps under sangoma/token-vending/ in the local stack of make serve")


# -- put: validation first, and what a new version changes -------------------------------------------


def test_put_of_a_malformed_document_stores_nothing(run_apps: Apps) -> None:
    code, out, _ = run_apps("put", "billing", run_apps.file(secret_document(client_secret="")))

    assert code == 1
    assert out.splitlines()[-2:] == [f"{run_apps.tmp_path / 'secret.json'}: error: client_secret: must be a "
                                     "non-empty string", f"{run_apps.tmp_path / 'secret.json'}: not stored"]
    with pytest.raises(run_apps.stack.client("secretsmanager").exceptions.ResourceNotFoundException):
        run_apps.secret()


def test_put_of_a_new_version_says_whether_credentials_or_only_the_policy_changed(run_apps: Apps) -> None:
    run_apps("put", "billing", run_apps.file(secret_document()))

    code, policy_only, _ = run_apps("put", "billing", run_apps.file(secret_document(
        allowed_callers=[CALLER_ROLE, "arn:aws:iam::111122223333:user/ops"], allowed_scopes=["cx.agent-calls"])))
    assert code == 0
    assert policy_only.splitlines()[1:] == [
        "same credentials, policy change only: within SECRET_CACHE_SECONDS (300 s by default) every container of "
        "the function applies it; cached tokens stay valid",
        "  - allowed_scopes: cx.queue-calls",
        "  + allowed_callers: arn:aws:iam::111122223333:user/ops",
    ]

    code, rotated, _ = run_apps("put", "billing", run_apps.file(secret_document(client_secret="cs_rotated_SECRET")))
    assert code == 0
    assert rotated.splitlines()[1].startswith("new credentials: within SECRET_CACHE_SECONDS")
    assert "cs_rotated_SECRET" not in rotated and CLIENT_SECRET not in rotated + policy_only

    versions = run_apps.secret()["VersionIdsToStages"]
    code, unchanged, _ = run_apps("put", "billing", run_apps.file(json.dumps(
        secret_document(client_secret="cs_rotated_SECRET"), indent=4)))  # same document, other formatting
    assert (code, unchanged) == (0, "unchanged: sangoma/token-vending/billing already holds this document; nothing "
                                    "stored\n")
    assert run_apps.secret()["VersionIdsToStages"] == versions


def test_put_that_switches_the_token_mode_says_what_callers_get_from_their_next_vends(run_apps: Apps) -> None:
    run_apps("put", "billing", run_apps.file(secret_document()))

    _, to_shared, _ = run_apps("put", "billing", run_apps.file(secret_document(tokens="shared")))
    _, back, _ = run_apps("put", "billing", run_apps.file(secret_document(tokens="per_caller")))

    assert to_shared.splitlines()[1] == (
        "same credentials, token mode per_caller -> shared: within SECRET_CACHE_SECONDS (300 s by default) every "
        "container of the function applies it: every allowed caller is given the same token per scope set, minted "
        "on their next vends; the per_caller tokens are no longer served (they stay in the token table until they "
        "expire)")
    assert back.splitlines()[1].startswith("same credentials, token mode shared -> per_caller: ")
    assert "each caller has tokens of its own" in back and "the shared tokens are no longer served" in back


def test_put_with_a_customer_managed_key_encrypts_the_secret_with_it(run_apps: Apps) -> None:
    key_id = run_apps.stack.client("kms").create_key(Description="app secrets")["KeyMetadata"]["KeyId"]

    code, out, _ = run_apps("put", "billing", run_apps.file(secret_document()), "--kms-key", key_id)

    assert code == 0
    assert run_apps.secret()["KmsKeyId"] == key_id
    assert "note: the function reads this secret only if its role may decrypt with that key" in out
    assert "SecretKmsKeyArns" in out  # the template parameter that grants it


def test_put_refuses_an_app_name_the_api_would_refuse(run_apps: Apps) -> None:
    code, _, err = run_apps("put", "billing/../other", run_apps.file(secret_document()))

    assert code == 1
    assert err == "error: app name must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$\n"


# -- check: the function's own decision -----------------------------------------------------------


CASES = [
    (CALLER_SESSION, "cx.agent-calls", "allowed"),
    (CALLER_SESSION, "cx.queue-calls cx.agent-calls", "allowed"),
    ("arn:aws:sts::111122223333:assumed-role/other-service/s", "cx.agent-calls", "access_denied"),
    (f"arn:aws:iam::{OTHER_ACCOUNT}:user/anyone", "cx.agent-calls", "allowed"),  # the account-wide entry
    (CALLER_SESSION, "cx.agent-calls cx.admin", "invalid_scope"),
    ("arn:aws:sts::111122223333:assumed-role/other-service/s", "cx.admin", "access_denied"),  # caller first
]


@pytest.mark.parametrize(("caller", "scope", "verdict"), CASES)
def test_check_says_what_the_function_answers(run_apps: Apps, lam: Lambda, caller: str, scope: str,
                                              verdict: str) -> None:
    run_apps("put", "billing", run_apps.file(secret_document(allowed_callers=[CALLER_ROLE, OTHER_ACCOUNT])))
    run_apps.stack.token_endpoint.clients["billing-client"] = CLIENT_SECRET

    code, out, _ = run_apps("check", "billing", "--caller", caller, "--scope", scope)
    answer = lam.vend(app="billing", scope=scope, caller=caller)

    if verdict == "allowed":
        assert (code, answer.status) == (0, 200)
        assert out.startswith(f"allowed: {caller} may have billing's token for scope ")
        holder = caller.rsplit("/", 1)[0] if ":assumed-role/" in caller else caller  # a role's sessions share one
        assert f"holder: {holder} (tokens per_caller: its own token)\n" in out
        assert "nothing was minted" in out
    else:
        assert (code, answer.status, answer.error) == (1, 403, verdict)
        assert out.startswith(f"denied: the function answers 403 {verdict}: ")


def test_check_says_a_caller_of_an_app_that_shares_its_tokens_holds_none_of_its_own(run_apps: Apps) -> None:
    run_apps("put", "billing", run_apps.file(secret_document(tokens="shared")))

    code, out, _ = run_apps("check", "billing", "--caller", CALLER_SESSION, "--scope", "cx.agent-calls")

    assert code == 0
    assert out.splitlines()[1] == "holder: none (tokens shared: the app's one token per scope set)"


def test_check_mints_nothing(run_apps: Apps) -> None:
    run_apps("put", "billing", run_apps.file(secret_document()))

    run_apps("check", "billing", "--caller", CALLER_SESSION, "--scope", "cx.agent-calls")

    assert run_apps.stack.token_endpoint.request_count == 0
    assert run_apps.stack.table_items() == []


def test_check_takes_a_role_arn_as_one_of_its_sessions(run_apps: Apps) -> None:
    run_apps("put", "billing", run_apps.file(secret_document()))

    code, out, _ = run_apps("check", "billing", "--caller", CALLER_ROLE, "--scope", "cx.agent-calls")

    assert code == 0
    assert out.splitlines()[0] == ("note: a role calls as one of its sessions; checking "
                                   "arn:aws:sts::111122223333:assumed-role/billing-service/check")


def test_check_of_an_unknown_app_a_bad_scope_or_a_non_arn(run_apps: Apps) -> None:
    unknown = run_apps("check", "nobody", "--caller", CALLER_SESSION, "--scope", "cx.agent-calls")
    bad_scope = run_apps("check", "demo", "--caller", CALLER_SESSION, "--scope", 'cx."x"')
    not_arn = run_apps("check", "demo", "--caller", "billing-service", "--scope", "cx.agent-calls")

    assert unknown[0] == 1 and unknown[1].startswith("denied: the function answers 404 unknown_app: no secret "
                                                     "sangoma/token-vending/nobody")
    assert bad_scope[0] == 1 and bad_scope[2].startswith("error: --scope: the function answers 400 invalid_request: ")
    assert not_arn[0] == 1 and not_arn[2].startswith("error: --caller must be an IAM ARN as API Gateway passes it")


# -- remove, restore ----------------------------------------------------------------------------------


def test_remove_schedules_deletion_the_function_answers_404_and_restore_brings_the_same_token_back(
        run_apps: Apps, lam: Lambda) -> None:
    run_apps("put", "billing", run_apps.file(secret_document()))
    run_apps.stack.token_endpoint.clients["billing-client"] = CLIENT_SECRET
    vended = lam.vend(app="billing").body
    assert vended

    code, out, _ = run_apps("remove", "billing")

    assert code == 0
    assert out.startswith("scheduled the deletion of sangoma/token-vending/billing for ")
    assert "recovery window 7 days; undo until then: make apps ARGS=\"restore billing\"" in out
    assert "Tokens already handed out keep working at the CX APIs until they expire" in out
    assert ("- Within SECRET_CACHE_SECONDS (300 s by default) every container of the function answers 404 "
            "unknown_app for billing.") in out
    assert run_apps.secret().get("DeletedDate")
    Lambda.new_container()  # past SECRET_CACHE_SECONDS: the secret is read again
    gone = lam.vend(app="billing")
    assert (gone.status, gone.error) == (404, "unknown_app")
    cached = [item for item in run_apps.stack.table_items() if item.get("app", {}).get("S") == "billing"]
    assert cached  # still cached, not served

    refused = run_apps("put", "billing", run_apps.file(secret_document()))
    assert refused[0] == 1 and "is scheduled for deletion on" in refused[2] and "restore" in refused[2]

    assert run_apps("restore", "billing")[0] == 0
    Lambda.new_container()
    back = lam.vend(app="billing").body
    assert back and back["fingerprint"] == vended["fingerprint"]
    assert run_apps.stack.token_endpoint.request_count == 1


def test_remove_force_now_deletes_at_once_and_the_name_can_be_used_again(run_apps: Apps) -> None:
    run_apps("put", "billing", run_apps.file(secret_document()))

    code, out, _ = run_apps("remove", "billing", "--force-now")

    assert code == 0
    assert out.startswith("deleted sangoma/token-vending/billing now, without a recovery window: this cannot be "
                          "undone")
    assert run_apps("put", "billing", run_apps.file(secret_document()))[0] == 0


def test_remove_refuses_a_recovery_window_secrets_manager_would_refuse(run_apps: Apps) -> None:
    code, _, err = run_apps("remove", "demo", "--recovery-days", "3")

    assert code == 1
    assert err == "error: --recovery-days must be 7 to 30\n"


# -- where it acts ------------------------------------------------------------------------------------


def test_local_without_make_serve_says_so_in_one_line(lam: Lambda, capsys: pytest.CaptureFixture[str]) -> None:
    assert not local_state.state_file().exists()

    code = apps.main(["list", "--local"], out=io.StringIO())

    assert code == 1
    assert capsys.readouterr().err == ("error: make serve is not running (no .local-stack.json): start it in another "
                                       "terminal\n")


def _deploy_stack(stack: LocalStack, name: str, prefix: str) -> None:
    template = {"Parameters": {"SecretPrefix": {"Type": "String", "Default": "sangoma/token-vending/"}},
                "Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {}}}}
    stack.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template),
                                                 Parameters=[{"ParameterKey": "SecretPrefix",
                                                              "ParameterValue": prefix}])


def test_aws_mode_takes_the_prefix_from_the_stack(run_apps: Apps) -> None:
    # The stack fixture points AWS_ENDPOINT_URL at moto: AWS mode, as in an account.
    _deploy_stack(run_apps.stack, "sangoma-token-vending-dev", "sangoma/token-vending-dev/")

    code, out, _ = run_apps("put", "billing", run_apps.file(secret_document()), "--stack",
                            "sangoma-token-vending-dev", local=False)

    assert code == 0
    assert out.startswith("created sangoma/token-vending-dev/billing (version ")
    assert f"in AWS {REGION}" in out.splitlines()[0]


def test_aws_mode_without_a_stack_falls_back_to_the_default_prefix_and_says_so(run_apps: Apps) -> None:
    code, out, err = run_apps("list", local=False)

    assert code == 0
    assert out.split() == ["APP", "CHANGED", "MANAGED", "STATUS", *out.split()[4:]] and "demo" in out
    assert err.startswith("note: stack sangoma-token-vending not readable in us-east-1 (ValidationError); using the "
                          "default prefix sangoma/token-vending/")


def test_aws_mode_with_a_missing_named_stack_or_a_bad_prefix_is_an_error(run_apps: Apps) -> None:
    missing = run_apps("list", "--stack", "no-such-stack", local=False)
    bad_prefix = run_apps("list", "--prefix", "no-trailing-slash", local=False)

    assert missing[0] == 1 and missing[2].startswith("error: cloudformation DescribeStacks: ValidationError: ")
    assert bad_prefix[0] == 1 and bad_prefix[2].startswith("error: --prefix must match")
