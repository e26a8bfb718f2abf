"""`make smoke`: one vend with the caller's own credentials through the client, against the local gateway (the
demo key file), and each failure put into words an operator acts on."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.gateway import LocalGateway, load_credentials
from devstack.stub_token_endpoint import Reply

from .conftest import SCOPES, Lambda

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
    request, answer = result.stdout.splitlines()
    assert request == (f"GET {gateway.url}/apps/demo/token  scope='{SCOPES}'  signed for us-east-1, access key "
                       "AKIA...0001 (env)")
    assert answer.startswith(f"OK: a bearer token for demo, scope '{SCOPES}', fingerprint ")
    assert answer.endswith("days left); the token itself is not shown")
    assert "sgm_" not in result.stdout  # the stub's tokens start so


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
    assert 'make apps ARGS="check demo --caller YOUR_ARN --scope ...' in advice


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


def test_a_token_endpoint_that_is_down(gateway: LocalGateway, lam: Lambda) -> None:
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
    assert result.stderr == 'usage: make smoke URL=<VendingUrl> APP=<app> SCOPE="<scopes>" [REGION=<region>]\n'
