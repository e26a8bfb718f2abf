"""The operator commands for a deployed stack that README.md and docs/operations.md show, run as printed against moto
standing in for the account (AWS_ENDPOINT_URL) and the local gateway standing in for the deployed API ($URL)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.gateway import LocalGateway, load_credentials
from devstack.template import resource

from .conftest import Lambda
from .operator_commands import AWS_FLOW, PROD_STACK, printed_commands, shell_env

ROOT = Path(__file__).resolve().parents[2]
PROD_PREFIX = "sangoma/token-vending-prod/"  # not the default: the commands must find it through the stack
DEMO_KEY = "AKIALOCALDEMO0000001"


@pytest.fixture
def account(lam: Lambda, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A deployed stack in moto, the function configured as that stack configures it, and the operator's shell."""
    template = {
        "Parameters": {"SecretPrefix": {"Type": "String", "Default": "sangoma/token-vending/"},
                       "TokenUrl": {"Type": "String", "Default": "https://auth.sangoma.com/oauth/token"}},
        "Resources": {
            "TokenTable": {"Type": "AWS::DynamoDB::Table", "Properties": resource("TokenTable")["Properties"]},
            "TokenVendingLogGroup": {"Type": "AWS::Logs::LogGroup", "Properties": {}},
        },
        "Outputs": {"TokenTableName": {"Value": {"Ref": "TokenTable"}}},
    }
    cloudformation = lam.stack.client("cloudformation")
    parameters = {"SecretPrefix": PROD_PREFIX, "TokenUrl": lam.stack.token_endpoint.url}
    cloudformation.create_stack(StackName=PROD_STACK, TemplateBody=json.dumps(template), Parameters=[
        {"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()])
    outputs = cloudformation.describe_stacks(StackName=PROD_STACK)["Stacks"][0]["Outputs"]
    monkeypatch.setenv("TOKEN_TABLE_NAME", outputs[0]["OutputValue"])
    monkeypatch.setenv("SECRET_PREFIX", PROD_PREFIX)
    Lambda.new_container()
    lam.stack.accept_every_app(PROD_PREFIX)  # Sangoma knows the credentials the operator stores

    home = tmp_path / "home"
    home.mkdir()
    (home / "billing-secret.json").write_text((ROOT / "examples" / "app-secret.json").read_text())
    principals = load_credentials()
    with LocalGateway(principals) as gateway:
        yield shell_env(HOME=str(home), URL=gateway.url, AWS_ENDPOINT_URL=lam.stack.moto.url,
                        AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID=DEMO_KEY,
                        AWS_SECRET_ACCESS_KEY=principals[DEMO_KEY].secret_access_key)


def test_onboarding_smoke_testing_and_listing_with_the_readmes_commands(account: dict[str, str]) -> None:
    outputs = {}
    for command in AWS_FLOW:
        result = subprocess.run(["bash", "-c", command], cwd=ROOT, env=account, capture_output=True, text=True,
                                timeout=120, check=False)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        outputs[command] = result.stdout

    validate, put, listed, show, check, smoke, tokens, remove, restore = AWS_FLOW
    assert outputs[validate].endswith("billing-secret.json: valid (2 scopes, 2 callers)\n")
    assert outputs[put].startswith(f"created {PROD_PREFIX}billing (version ")  # the stack's prefix, not the default
    assert [line.split()[0] for line in outputs[listed].splitlines()] == ["APP", "billing"]
    assert f"secret:        {PROD_PREFIX}billing in AWS us-east-1" in outputs[show]
    assert outputs[check].startswith("allowed: arn:aws:sts::111122223333:assumed-role/billing-service/any-session "
                                     "may have billing's token for scope 'cx.agent-calls cx.queue-calls'")
    assert "OK: a bearer token for billing, scope 'cx.agent-calls cx.queue-calls'" in outputs[smoke]
    fingerprint = outputs[smoke].split("fingerprint ")[1].split(",")[0]
    header, row = outputs[tokens].splitlines()
    assert header.split()[:5] == ["EXPIRES_AT", "LEFT", "MINTED", "APP", "HOLDER"]
    # The smoke test vended as the demo key's IAM user: the token is that user's own (the app's default mode).
    assert row.split()[3:5] == ["billing", "arn:aws:iam::111122223333:user/local-demo-caller"]
    assert fingerprint in row
    # show names the credentials by the id the function stored the token under (make tokens' CREDENTIAL_ID)
    assert row.split()[-1] == "yes"  # SERVED: the function serves it under the app's current secret
    assert f"credential id: {row.split()[-3]}\n" in outputs[show]  # CREDENTIAL_ID, SECRET_VERSION, SERVED
    assert outputs[remove].startswith(f"scheduled the deletion of {PROD_PREFIX}billing for ")
    assert outputs[restore].startswith(f"restored {PROD_PREFIX}billing")
    # What remove tells the operator to run next names the stack it acted on: pasted, it is the README's own
    # restore and tokens commands, which ran above.
    assert printed_commands(outputs[remove]) == [restore, tokens]
