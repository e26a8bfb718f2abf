"""`make smoke`: one vend with the caller's own credentials through the client, against the local gateway (the
demo key file), and each failure put into words an operator acts on; then whether callers run the function's
current configuration (the alias `live` against $LATEST), with moto standing in for Lambda and API Gateway."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.gateway import LocalGateway, load_credentials
from devstack.stub_token_endpoint import Reply
from tools.live_alias import Target, target_from_url

from .conftest import SCOPES, Lambda, MovableClock

ROOT = Path(__file__).resolve().parents[2]
PRINCIPALS = load_credentials()
DEMO_KEY, OUTSIDER_KEY = "AKIALOCALDEMO0000001", "AKIALOCALOUTSIDER001"
DEMO_SECRET = PRINCIPALS[DEMO_KEY].secret_access_key


@pytest.fixture
def gateway(lam: Lambda) -> Iterator[LocalGateway]:
    lam.stack.add_app("demo", allowed_callers=[PRINCIPALS[DEMO_KEY].principal_arn])
    with LocalGateway(PRINCIPALS) as gateway:
        yield gateway


def smoke(*args: str, key: str | None = DEMO_KEY, secret: str | None = None,
          **env: str) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    clean.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true",
                 **env)
    if key:
        clean.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret or PRINCIPALS[key].secret_access_key)
    return subprocess.run([sys.executable, "-m", "tools.smoke", *args], cwd=ROOT, env=clean, capture_output=True,
                          text=True, timeout=120, check=False)


def test_a_successful_vend_prints_the_answer_without_the_token(gateway: LocalGateway) -> None:
    result = smoke("--url", gateway.url, "--app", "demo", "--scope", SCOPES)

    assert result.returncode == 0, result.stdout + result.stderr
    request, answer, alias = result.stdout.splitlines()
    assert request == (f"GET {gateway.url}/apps/demo/token  scope='{SCOPES}'  signed for us-east-1, access key "
                       "AKIA...0001 (env)")
    assert answer.startswith(f"OK: a bearer token for demo, scope '{SCOPES}', fingerprint ")
    assert answer.endswith("days left); the token itself is not shown")
    assert "sgm_" not in result.stdout  # the stub's tokens start so
    # Against make serve's gateway there is no alias to compare, and no function ARN to ask for.
    assert alias == ("live alias: nothing to compare here: make serve runs the function from this checkout's source, "
                     "without versions or an alias")


def failure(result: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    """(the FAIL line, the advice) of a failed smoke test."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    fail = next(line for line in lines if line.startswith("FAIL: "))
    advice = next(line for line in lines if line.startswith("what to do: "))
    return fail, advice


def test_a_scope_the_app_does_not_allow(gateway: LocalGateway) -> None:
    fail, advice = failure(smoke("--url", gateway.url, "--app", "demo", "--scope", "cx.agent-calls cx.admin"))

    assert fail.startswith("FAIL: HTTP 403 invalid_scope: ") and "cx.admin" in fail
    # The local gateway's URL: the command it names acts on the local stack too.
    assert advice == ("what to do: a scope is not in the app's allowed_scopes: `make apps ARGS=\"show demo\" "
                      "LOCAL=1` lists them")


def test_a_caller_the_app_does_not_allow(gateway: LocalGateway) -> None:
    fail, advice = failure(smoke("--url", gateway.url, "--app", "demo", "--scope", SCOPES, key=OUTSIDER_KEY))

    assert fail.startswith("FAIL: HTTP 403 access_denied: ")
    assert advice.startswith("what to do: the app's allowed_callers does not list your principal")
    # The check it names is for the principal this run called as, and the scopes it asked for: it works pasted.
    outsider = PRINCIPALS[OUTSIDER_KEY].principal_arn
    assert f'`make apps ARGS="check demo --caller {outsider} --scope \'{SCOPES}\'" LOCAL=1`' in advice


def test_an_app_without_a_secret(gateway: LocalGateway) -> None:
    fail, advice = failure(smoke("--url", gateway.url, "--app", "biling", "--scope", SCOPES))

    assert fail.startswith("FAIL: HTTP 404 unknown_app: ")
    assert advice.startswith("what to do: there is no secret for biling under the stack's prefix")


def test_a_wrong_secret_key(gateway: LocalGateway) -> None:
    fail, advice = failure(smoke("--url", gateway.url, "--app", "demo", "--scope", SCOPES, secret="wrong"))

    assert fail.startswith("FAIL: HTTP 403 InvalidSignatureException: The request signature we calculated does not "
                           "match")
    assert advice.startswith("what to do: API Gateway refused the signature: sign for the API's region (us-east-1 "
                             "was used")


def test_signing_for_another_region(gateway: LocalGateway) -> None:
    fail, advice = failure(smoke("--url", gateway.url, "--app", "demo", "--scope", SCOPES, "--region", "eu-west-1"))

    assert fail == ("FAIL: HTTP 403 InvalidSignatureException: Credential should be scoped to a valid region, not "
                    "'eu-west-1'. This gateway expects 'us-east-1'.")
    assert "(eu-west-1 was used; an execute-api URL names its region)" in advice


def test_an_access_key_api_gateway_does_not_know(gateway: LocalGateway) -> None:
    fail, advice = failure(smoke("--url", gateway.url, "--app", "demo", "--scope", SCOPES,
                                 key="AKIANOBODYKNOWS00001", secret="x"))

    assert fail == "FAIL: HTTP 403 UnrecognizedClientException: The security token included in the request is invalid."
    assert "they are wrong, or temporary ones have expired" in advice


def test_a_url_without_the_api_behind_it(gateway: LocalGateway) -> None:
    fail, advice = failure(smoke("--url", gateway.url + "/v2", "--app", "demo", "--scope", SCOPES))

    assert fail == "FAIL: HTTP 403 MissingAuthenticationTokenException: Missing Authentication Token"
    assert advice.startswith("what to do: API Gateway found no signature, or no such route: use the stack's "
                             "VendingUrl output as it is")


def test_credentials_the_token_endpoint_rejects(gateway: LocalGateway, lam: Lambda) -> None:
    lam.stack.add_app("ghost", allowed_callers=[PRINCIPALS[DEMO_KEY].principal_arn], register_with_endpoint=False)

    fail, advice = failure(smoke("--url", gateway.url, "--app", "ghost", "--scope", SCOPES))

    assert fail.startswith("FAIL: HTTP 502 upstream_error: ")
    assert "check client_id and client_secret in the app's secret" in advice


def test_a_token_endpoint_that_is_down(gateway: LocalGateway, lam: Lambda, clock: MovableClock) -> None:
    lam.stack.token_endpoint.queue(*[Reply(503) for _ in range(3)])

    result = smoke("--url", gateway.url, "--app", "demo", "--scope", SCOPES)
    fail, advice = failure(result)

    assert fail.startswith("FAIL: HTTP 503 upstream_unavailable: ")
    assert re.search(r"^      Retry-After: \d+ s$", result.stdout, re.MULTILINE)
    assert advice.startswith("what to do: Sangoma's token endpoint is unreachable, slow or asking us to wait")


def test_a_service_that_cannot_be_reached() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening: connections are refused

        fail, advice = failure(smoke("--url", url, "--app", "demo", "--scope", SCOPES))

    assert fail == "FAIL: unavailable: the vending service could not be reached (NewConnectionError)"
    assert advice.startswith(f"what to do: the service could not be reached at {url}: check the URL")


def test_no_credentials_at_all() -> None:
    fail, advice = failure(smoke("--url", "https://abc123.execute-api.eu-west-1.amazonaws.com/v1", "--app", "demo",
                                 "--scope", SCOPES, key=None))

    assert fail == "FAIL: no_credentials: no AWS credentials found (botocore's default chain)"
    assert advice.startswith("what to do: no AWS credentials found: set AWS_PROFILE")


def test_missing_arguments_print_the_make_usage() -> None:
    result = smoke("--url", "", "--app", "demo", "--scope", SCOPES)

    assert result.returncode == 2
    assert result.stderr == ('usage: make smoke URL=<VendingUrl> APP=<app> SCOPE="<scopes>" [REGION=<region>] '
                             '[FUNCTION=<function>]\n')


# -- the alias `live` against $LATEST ---------------------------------------------------------------------------


def zipped(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("token_vending/app.py", source)
    return buffer.getvalue()


@dataclass
class Deployed:
    """A function as a deploy leaves it in moto: version 1 published, `live` on it."""

    aws: Any  # the Lambda client
    layers: list[str]
    name: str = "sangoma-token-vending-TokenVendingFunction-1A2B3C"

    def publish_and_move_live(self) -> str:
        version: str = self.aws.publish_version(FunctionName=self.name)["Version"]
        self.aws.update_alias(FunctionName=self.name, Name="live", FunctionVersion=version)
        return version


@pytest.fixture
def deployed(lam: Lambda) -> Deployed:
    aws = lam.stack.client("lambda")
    role = lam.stack.client("iam").create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    layers = [aws.publish_layer_version(LayerName="sangoma-token-vending-dependencies",
                                        Content={"ZipFile": zipped(f"# {n}")})["LayerVersionArn"] for n in (1, 2)]
    function = Deployed(aws, layers)
    aws.create_function(FunctionName=function.name, Runtime="python3.13", Role=role,
                        Handler="token_vending.app.lambda_handler", Code={"ZipFile": zipped("# one")},
                        Layers=[layers[0]], MemorySize=512, Timeout=28,
                        Environment={"Variables": {"TOKEN_URL": "https://auth.sangoma.com/oauth/token",
                                                   "MEMORY_TRUST_SECONDS": "60"}})
    version = aws.publish_version(FunctionName=function.name)["Version"]
    aws.create_alias(FunctionName=function.name, Name="live", FunctionVersion=version)
    return function


def smoke_function(gateway: LocalGateway, lam: Lambda, function: str) -> subprocess.CompletedProcess[str]:
    return smoke("--url", gateway.url, "--app", "demo", "--scope", SCOPES, "--function", function,
                 AWS_ENDPOINT_URL=lam.stack.moto.url)


def test_callers_left_on_an_older_version_fail_in_words(gateway: LocalGateway, lam: Lambda,
                                                        deployed: Deployed) -> None:
    # What a deploy did before versions followed Revision: a new TokenUrl and dependencies layer on $LATEST only.
    deployed.aws.update_function_configuration(
        FunctionName=deployed.name, Layers=[deployed.layers[1]],
        Environment={"Variables": {"TOKEN_URL": "https://auth.example.com/oauth/token", "MEMORY_TRUST_SECONDS": "60"}})

    result = smoke_function(gateway, lam, deployed.name)

    assert result.returncode == 1, result.stdout + result.stderr
    *vended, differs, fail = result.stdout.splitlines()
    assert vended[-1].startswith("OK: a bearer token for demo")  # the vend itself worked
    assert differs == "live alias: version 1 differs from $LATEST in environment (TOKEN_URL), layers"
    assert fail == "FAIL: callers still run version 1: deploy with make deploy"
    assert "auth.example.com" not in result.stdout  # variable names, never values


def test_memory_timeout_and_code_count_too(gateway: LocalGateway, lam: Lambda, deployed: Deployed) -> None:
    deployed.aws.update_function_configuration(FunctionName=deployed.name, MemorySize=1024, Timeout=15)
    deployed.aws.update_function_code(FunctionName=deployed.name, ZipFile=zipped("# two"))

    result = smoke_function(gateway, lam, deployed.name)

    assert result.returncode == 1
    assert "live alias: version 1 differs from $LATEST in memory, timeout, code\n" in result.stdout


def test_after_a_deploy_that_moved_live_it_passes(gateway: LocalGateway, lam: Lambda, deployed: Deployed) -> None:
    deployed.aws.update_function_configuration(FunctionName=deployed.name, Layers=[deployed.layers[1]])
    deployed.publish_and_move_live()

    result = smoke_function(gateway, lam, f"{deployed.name}:live")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "OK: live runs version 2, the function's current configuration"


def test_a_function_that_is_not_there_is_not_checked_and_it_says_what_it_takes(gateway: LocalGateway,
                                                                              lam: Lambda) -> None:
    result = smoke_function(gateway, lam, "another-function")

    assert result.returncode == 0, result.stdout + result.stderr  # nothing known to be wrong
    assert result.stdout.splitlines()[-1].startswith("live alias: not checked: An error occurred "
                                                     "(ResourceNotFoundException) when calling the GetAlias operation")
    assert result.stdout.endswith("(it takes apigateway:GET, lambda:GetAlias and lambda:GetFunctionConfiguration)\n")


def test_the_function_is_found_from_the_url_through_the_apis_integration(lam: Lambda, deployed: Deployed) -> None:
    apigateway = lam.stack.client("apigateway")
    api = apigateway.create_rest_api(name="sangoma-token-vending")["id"]
    parent = next(item["id"] for item in apigateway.get_resources(restApiId=api)["items"] if item["path"] == "/")
    for part in ("apps", "{app}", "token"):
        parent = apigateway.create_resource(restApiId=api, parentId=parent, pathPart=part)["id"]
    apigateway.put_method(restApiId=api, resourceId=parent, httpMethod="GET", authorizationType="AWS_IAM")
    arn = deployed.aws.get_function(FunctionName=deployed.name)["Configuration"]["FunctionArn"]
    apigateway.put_integration(
        restApiId=api, resourceId=parent, httpMethod="GET", type="AWS_PROXY", integrationHttpMethod="POST",
        uri=f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}:live/invocations")

    assert target_from_url(f"https://{api}.execute-api.us-east-1.amazonaws.com/v1", apigateway) == Target(arn, "live")
    assert target_from_url(f"https://{api}-vpce-0123456789abcdef0.execute-api.us-east-1.amazonaws.com/v1/",
                           apigateway) == Target(arn, "live")  # a private API's endpoint-specific name
    assert target_from_url("https://vending.internal.example/v1", apigateway) is None
