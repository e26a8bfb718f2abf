"""The caller's side over real HTTP: the client package and curl against the local SigV4 gateway,
which calls the real handler against the moto server and the stub token endpoint."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from sangoma_token_client import TokenClient, TokenVendingError

from devstack.gateway import DEMO_CREDENTIALS, LocalGateway, Principal, load_credentials
from devstack.stub_token_endpoint import Reply

from .conftest import CALLER_SESSION, SCOPES, Lambda, MovableClock

ROOT = Path(__file__).resolve().parents[2]
KEY, SECRET = "AKIATESTCALLER000001", "test-caller-secret"
OUTSIDER_KEY, OUTSIDER_SECRET = "AKIATESTOUTSIDER0001", "test-outsider-secret"
TEMP_KEY, TEMP_SECRET, TEMP_TOKEN = "ASIATESTCALLER000001", "test-temp-secret", "test-session-token"
PRINCIPALS = {
    KEY: Principal(KEY, SECRET, CALLER_SESSION),
    OUTSIDER_KEY: Principal(OUTSIDER_KEY, OUTSIDER_SECRET, "arn:aws:iam::444455556666:user/outsider"),
    TEMP_KEY: Principal(TEMP_KEY, TEMP_SECRET, CALLER_SESSION, session_token=TEMP_TOKEN),
}
BAD_SIGNATURE = "The request signature we calculated does not match the signature you provided."


@pytest.fixture
def gateway(lam: Lambda) -> Iterator[LocalGateway]:
    with LocalGateway(PRINCIPALS) as gateway:
        yield gateway


def session_for(key: str, secret: str, token: str | None = None) -> botocore.session.Session:
    session = botocore.session.Session()
    session.set_credentials(key, secret, token)
    return session


class RecordedSleep:
    """The client's sleep: records the wait and moves the function's clock on by it instead of waiting, since the
    service remembers the token endpoint's Retry-After (in every container) and answers 503 until it has passed."""

    def __init__(self, clock: MovableClock | None = None) -> None:
        self.waits: list[float] = []
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)


def client_for(gateway: LocalGateway, key: str = KEY, secret: str = SECRET, **kwargs: object) -> TokenClient:
    return TokenClient(gateway.url, region="us-east-1", session=session_for(key, secret), **kwargs)  # type: ignore[arg-type]


def signed(method: str, url: str, *, key: str = KEY, secret: str = SECRET, service: str = "execute-api",
           region: str = "us-east-1", token: str | None = None) -> dict[str, str]:
    """Headers botocore's signer puts on a request for `url`."""
    request = AWSRequest(method=method, url=url)
    SigV4Auth(Credentials(key, secret, token), service, region).add_auth(request)
    return dict(request.headers.items())


def send(method: str, url: str, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
    return urllib3.request(method, url, headers=headers or {}, retries=False, timeout=10)


def token_url(gateway: LocalGateway, query: str = "scope=cx.agent-calls%20cx.queue-calls", app: str = "demo") -> str:
    return f"{gateway.url}/apps/{app}/token?{query}"


# -- the client ---------------------------------------------------------------------------------


def test_client_gets_a_token_signed_with_sigv4(gateway: LocalGateway, lam: Lambda) -> None:
    token = client_for(gateway).get_token("demo", "cx.queue-calls cx.agent-calls")

    assert token.scope == SCOPES
    assert token.token_type == "bearer"
    assert token.access_token.startswith("sgm_")
    assert token.fingerprint == hashlib.sha256(token.access_token.encode()).hexdigest()[:16]
    assert 24_304_400 < token.expires_in <= 24_304_413
    assert token.access_token not in repr(token)
    assert gateway.requests == [("GET /apps/demo/token?scope=cx.agent-calls%20cx.queue-calls", 200)]
    assert lam.stack.token_endpoint.received[0].scope == SCOPES


def test_second_get_token_is_served_from_memory_without_a_request(gateway: LocalGateway) -> None:
    client = client_for(gateway)
    first = client.get_token("demo", SCOPES)

    second = client.get_token("demo", ["cx.queue-calls", "cx.agent-calls"])

    assert second.access_token == first.access_token
    assert len(gateway.requests) == 1


def test_token_inside_the_margin_is_not_kept(gateway: LocalGateway, lam: Lambda) -> None:
    client = client_for(gateway, margin_seconds=30 * 86_400)
    lam.stack.token_endpoint.expires_in = 7 * 86_400  # a week left: inside a 30-day margin

    client.get_token("demo", SCOPES)
    client.get_token("demo", SCOPES)

    assert len(gateway.requests) == 2


def test_503_is_retried_after_the_retry_after_it_carries(gateway: LocalGateway, lam: Lambda,
                                                         clock: MovableClock) -> None:
    lam.stack.token_endpoint.queue(Reply(503, {"error": "temporarily_unavailable"}, headers={"Retry-After": "3"}))
    sleep = RecordedSleep(clock)

    token = client_for(gateway, sleep=sleep).get_token("demo", SCOPES)

    assert token.scope == SCOPES
    assert sleep.waits == [3.0]
    assert [status for _, status in gateway.requests] == [503, 200]


def test_503_asking_longer_than_the_client_waits_is_raised_at_once(gateway: LocalGateway, lam: Lambda,
                                                                   clock: MovableClock) -> None:
    lam.stack.token_endpoint.queue(Reply(503, "busy", headers={"Retry-After": "60"}))
    sleep = RecordedSleep(clock)

    with pytest.raises(TokenVendingError) as raised:
        client_for(gateway, sleep=sleep, max_retry_wait_seconds=10).get_token("demo", SCOPES)

    assert raised.value.error == "upstream_unavailable"
    assert raised.value.status == 503
    assert raised.value.retry_after == 60
    assert sleep.waits == []
    assert len(gateway.requests) == 1


def test_retries_stop_after_max_attempts(gateway: LocalGateway, lam: Lambda,
                                         clock: MovableClock) -> None:
    lam.stack.token_endpoint.queue(*[Reply(503, "busy", headers={"Retry-After": "3"})] * 3)
    sleep = RecordedSleep(clock)

    with pytest.raises(TokenVendingError) as raised:
        client_for(gateway, sleep=sleep, max_attempts=3).get_token("demo", SCOPES)

    assert raised.value.error == "upstream_unavailable"
    assert sleep.waits == [3.0, 3.0]
    assert len(gateway.requests) == 3


def test_report_rejected_invalidates_and_the_next_get_fetches_a_new_token(gateway: LocalGateway,
                                                                          lam: Lambda) -> None:
    client = client_for(gateway)
    rejected = client.get_token("demo", SCOPES)

    assert client.report_rejected("demo", "cx.queue-calls cx.agent-calls", rejected) is True
    fresh = client.get_token("demo", SCOPES)
    assert client.report_rejected("demo", SCOPES, rejected) is False  # not the token the service hands out now

    assert fresh.access_token != rejected.access_token
    assert gateway.requests == [
        ("GET /apps/demo/token?scope=cx.agent-calls%20cx.queue-calls", 200),
        (f"DELETE /apps/demo/token?fingerprint={rejected.fingerprint}&scope=cx.agent-calls%20cx.queue-calls", 204),
        ("GET /apps/demo/token?scope=cx.agent-calls%20cx.queue-calls", 200),
        (f"DELETE /apps/demo/token?fingerprint={rejected.fingerprint}&scope=cx.agent-calls%20cx.queue-calls", 204),
    ]
    assert lam.stack.token_endpoint.request_count == 2


def test_a_second_client_sees_the_invalidation_too(gateway: LocalGateway) -> None:
    reporter, other = client_for(gateway), client_for(gateway)
    rejected = reporter.get_token("demo", SCOPES)
    reporter.report_rejected("demo", SCOPES, rejected.access_token)

    assert other.get_token("demo", SCOPES).access_token != rejected.access_token


@pytest.mark.parametrize(("app", "scope", "key", "secret", "error", "status"), [
    ("nope", SCOPES, KEY, SECRET, "unknown_app", 404),
    ("demo", "cx.admin", KEY, SECRET, "invalid_scope", 403),
    ("demo", SCOPES, OUTSIDER_KEY, OUTSIDER_SECRET, "access_denied", 403),
    ("bad name!", SCOPES, KEY, SECRET, "invalid_request", 400),
    ("demo", SCOPES, KEY, "not-the-secret", "InvalidSignatureException", 403),
    ("demo", SCOPES, "AKIAUNKNOWNKEY000001", SECRET, "UnrecognizedClientException", 403),
])
def test_errors_surface_as_exceptions_with_code_and_description(gateway: LocalGateway, app: str, scope: str,
                                                                key: str, secret: str, error: str,
                                                                status: int) -> None:
    with pytest.raises(TokenVendingError) as raised:
        client_for(gateway, key, secret).get_token(app, scope)

    assert raised.value.error == error
    assert raised.value.status == status
    assert raised.value.error_description
    assert str(raised.value) == f"{error}: {raised.value.error_description}"


def test_upstream_rejection_is_not_retried(gateway: LocalGateway, lam: Lambda,
                                           clock: MovableClock) -> None:
    lam.stack.token_endpoint.queue(Reply(401, {"error": "invalid_client"}))
    sleep = RecordedSleep(clock)

    with pytest.raises(TokenVendingError) as raised:
        client_for(gateway, sleep=sleep).get_token("demo", SCOPES)

    assert raised.value.error == "upstream_error"
    assert sleep.waits == []


def test_unreachable_service_is_an_error_after_bounded_retries() -> None:
    with LocalGateway({}) as stopped:
        url = stopped.url  # a port that was just free and is closed again
    sleep = RecordedSleep()
    client = TokenClient(url, region="us-east-1", session=session_for(KEY, SECRET), sleep=sleep, max_attempts=2)

    with pytest.raises(TokenVendingError) as raised:
        client.get_token("demo", SCOPES)

    assert raised.value.error == "unavailable"
    assert raised.value.status is None
    assert len(sleep.waits) == 1


def test_temporary_credentials_sign_with_their_session_token(gateway: LocalGateway) -> None:
    client = TokenClient(gateway.url, region="us-east-1", session=session_for(TEMP_KEY, TEMP_SECRET, TEMP_TOKEN))

    assert client.get_token("demo", SCOPES).scope == SCOPES


# -- what the client accepts from the service ------------------------------------------------


class CannedService:
    """Stands in for the function behind the real gateway: gives the answer a test sets, counts the calls."""

    def __init__(self, **fields: Any) -> None:
        self.fields = fields
        self.calls = 0

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.calls += 1
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(self.fields)}


def rfc3339_in(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def canned(**overrides: Any) -> CannedService:
    """A well-formed answer for SCOPES that lives a day, with `overrides`."""
    fields = {"access_token": "sgm_canned", "token_type": "bearer", "scope": SCOPES, "expires_in": 86_400,
              "expires_at": rfc3339_in(86_400), "fingerprint": "0123456789abcdef", **overrides}
    return CannedService(**fields)


def client_behind(service: CannedService, **kwargs: Any) -> tuple[LocalGateway, TokenClient]:
    gateway = LocalGateway(PRINCIPALS, handler=service)  # bound now; `with gateway:` serves
    return gateway, client_for(gateway, **kwargs)


def test_a_well_formed_answer_is_kept_until_the_margin(lam: Lambda) -> None:
    service = canned()
    gateway, client = client_behind(service, margin_seconds=3600)
    with gateway:
        first, second = client.get_token("demo", SCOPES), client.get_token("demo", SCOPES)

    assert first.access_token == second.access_token == "sgm_canned"
    assert service.calls == 1


@pytest.mark.parametrize("answered", [
    "cx.agent-calls",  # fewer than asked: the CX API would refuse the caller
    "cx.admin cx.agent-calls cx.queue-calls",  # more than asked
    "cx.queue-calls cx.agent-calls",  # not the normalized form the service answers
    "cx.agent-calls cx.agent-calls cx.queue-calls",
    ["cx.agent-calls", "cx.queue-calls"],
    None,
])
def test_an_answer_for_another_scope_is_refused_and_not_kept(lam: Lambda, answered: Any) -> None:
    service = canned(scope=answered)
    gateway, client = client_behind(service)
    with gateway:
        for _ in range(2):
            with pytest.raises(TokenVendingError) as raised:
                client.get_token("demo", "cx.queue-calls cx.agent-calls")
            assert raised.value.error == "invalid_response"
            assert raised.value.status == 200
            assert "sgm_canned" not in str(raised.value)

    assert service.calls == 2  # nothing was cached: each call asked again


def test_a_token_is_kept_no_longer_than_its_expires_at_says(lam: Lambda) -> None:
    # expires_in says a day, expires_at an hour: inside a two-hour margin, so it is handed out, not kept.
    service = canned(expires_in=86_400, expires_at=rfc3339_in(3600))
    gateway, client = client_behind(service, margin_seconds=7200)
    with gateway:
        first, second = client.get_token("demo", SCOPES), client.get_token("demo", SCOPES)

    assert first.access_token == second.access_token == "sgm_canned"
    assert service.calls == 2


def test_a_token_is_kept_no_longer_than_its_expires_in_says(lam: Lambda) -> None:
    service = canned(expires_in=3600, expires_at=rfc3339_in(86_400))
    gateway, client = client_behind(service, margin_seconds=7200)
    with gateway:
        client.get_token("demo", SCOPES)
        client.get_token("demo", SCOPES)

    assert service.calls == 2


@pytest.mark.parametrize("expires_at", ["tomorrow", "2030-01-01T00:00:00", 1_900_000_000, None, ""])
def test_an_unusable_expires_at_is_an_invalid_response(lam: Lambda, expires_at: Any) -> None:
    gateway, client = client_behind(canned(expires_at=expires_at))
    with gateway, pytest.raises(TokenVendingError) as raised:
        client.get_token("demo", SCOPES)

    assert raised.value.error == "invalid_response"


# -- the gateway refuses what API Gateway refuses, before the function runs ----------------------


def assert_refused(response: urllib3.BaseHTTPResponse, error_type: str, message: str, lam: Lambda) -> None:
    assert response.status == 403
    assert response.headers["x-amzn-ErrorType"] == error_type
    assert message in response.json()["message"]
    assert lam.stack.moto.calls == []
    assert lam.stack.token_endpoint.request_count == 0


def test_unsigned_request_is_refused(gateway: LocalGateway, lam: Lambda) -> None:
    response = send("GET", token_url(gateway))

    assert_refused(response, "MissingAuthenticationTokenException", "Missing Authentication Token", lam)


def test_unknown_route_is_refused_like_api_gateway(gateway: LocalGateway, lam: Lambda) -> None:
    url = f"{gateway.url}/apps/demo/other"
    response = send("GET", url, signed("GET", url))

    assert_refused(response, "MissingAuthenticationTokenException", "Missing Authentication Token", lam)


def test_wrong_secret_is_refused(gateway: LocalGateway, lam: Lambda) -> None:
    url = token_url(gateway)
    response = send("GET", url, signed("GET", url, secret="guessed"))

    assert_refused(response, "InvalidSignatureException", BAD_SIGNATURE, lam)


def test_tampered_query_string_is_refused(gateway: LocalGateway, lam: Lambda) -> None:
    headers = signed("GET", token_url(gateway, "scope=cx.agent-calls"))
    response = send("GET", token_url(gateway, "scope=cx.agent-calls%20cx.queue-calls"), headers)

    assert_refused(response, "InvalidSignatureException", BAD_SIGNATURE, lam)


def test_request_signed_for_another_service_is_refused(gateway: LocalGateway, lam: Lambda) -> None:
    url = token_url(gateway)
    response = send("GET", url, signed("GET", url, service="s3"))

    assert_refused(response, "InvalidSignatureException", "Credential should be scoped to correct service", lam)


def test_request_signed_for_another_region_is_refused(gateway: LocalGateway, lam: Lambda) -> None:
    url = token_url(gateway)
    response = send("GET", url, signed("GET", url, region="eu-west-1"))

    assert_refused(response, "InvalidSignatureException", "Credential should be scoped to a valid region, not "
                                                          "'eu-west-1'. This gateway expects 'us-east-1'.", lam)


@pytest.mark.parametrize(("offset", "message"), [(600, "Signature expired"), (-600, "Signature not yet current")])
def test_stale_or_future_signature_is_refused(lam: Lambda, offset: int, message: str) -> None:
    # The gateway's clock is ten minutes away from the signer's: beyond API Gateway's five.
    with LocalGateway(PRINCIPALS, clock=lambda: time.time() + offset) as gateway:
        url = token_url(gateway)
        response = send("GET", url, signed("GET", url))

    assert_refused(response, "InvalidSignatureException", message, lam)


def test_unknown_access_key_and_missing_session_token_are_refused(gateway: LocalGateway, lam: Lambda) -> None:
    url = token_url(gateway)
    unknown = send("GET", url, signed("GET", url, key="AKIAUNKNOWNKEY000001"))
    no_token = send("GET", url, signed("GET", url, key=TEMP_KEY, secret=TEMP_SECRET))

    assert_refused(unknown, "UnrecognizedClientException", "security token included in the request is invalid", lam)
    assert_refused(no_token, "UnrecognizedClientException", "security token included in the request is invalid", lam)


def test_botocore_signed_query_in_any_order_is_accepted(gateway: LocalGateway) -> None:
    """botocore canonicalizes (sorts) the query it signs, whatever order the URL has."""
    token = client_for(gateway).get_token("demo", SCOPES)
    url = token_url(gateway, f"scope=cx.agent-calls%20cx.queue-calls&fingerprint={token.fingerprint}")

    response = send("DELETE", url, signed("DELETE", url))

    assert response.status == 204


def test_identity_reaches_the_handler_as_the_mapped_principal(gateway: LocalGateway, lam: Lambda) -> None:
    """The outsider's key maps to a principal the app does not allow; the caller's to one it does."""
    url = token_url(gateway)
    allowed = send("GET", url, signed("GET", url))
    denied = send("GET", url, signed("GET", url, key=OUTSIDER_KEY, secret=OUTSIDER_SECRET))

    assert allowed.status == 200
    assert allowed.headers["Cache-Control"] == "no-store"
    assert denied.status == 403
    assert denied.json()["error"] == "access_denied"


def test_deployed_style_stage_prefix_is_accepted(gateway: LocalGateway) -> None:
    token = TokenClient(gateway.url + "/v1", region="us-east-1", session=session_for(KEY, SECRET)).get_token(
        "demo", SCOPES)

    assert token.scope == SCOPES


# -- curl --aws-sigv4 ---------------------------------------------------------------------------

CURL = shutil.which("curl")


def curl_supports_sigv4() -> bool:
    if CURL is None:
        return False
    help_text = subprocess.run([CURL, "--help", "all"], capture_output=True, text=True, check=False).stdout
    return "--aws-sigv4" in help_text


needs_curl = pytest.mark.skipif(not curl_supports_sigv4(), reason="curl with --aws-sigv4 (7.75+) is not installed")


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    assert CURL is not None
    return subprocess.run([CURL, "--silent", "--show-error", "--write-out", "\n%{http_code}", *args],
                          capture_output=True, text=True, timeout=30, check=False)


def status_and_body(result: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


@needs_curl
def test_curl_aws_sigv4_gets_a_token_and_reports_it(gateway: LocalGateway) -> None:
    sigv4 = ["--aws-sigv4", "aws:amz:us-east-1:execute-api", "--user", f"{KEY}:{SECRET}"]

    status, body = status_and_body(curl(*sigv4, token_url(gateway)))
    assert status == 200, body
    answer = json.loads(body)
    assert answer["scope"] == SCOPES

    # Older curl (7.x) signs the query as written: parameters sorted by name, spaces as %20.
    query = f"fingerprint={answer['fingerprint']}&scope=cx.agent-calls%20cx.queue-calls"
    status, body = status_and_body(curl(*sigv4, "--request", "DELETE", token_url(gateway, query)))
    assert (status, body) == (204, "")


@needs_curl
def test_curl_with_a_wrong_secret_is_refused(gateway: LocalGateway) -> None:
    result = curl("--aws-sigv4", "aws:amz:us-east-1:execute-api", "--user", f"{KEY}:wrong", token_url(gateway))

    status, body = status_and_body(result)
    assert status == 403
    assert BAD_SIGNATURE in json.loads(body)["message"]


AWSCURL = shutil.which("awscurl", path=str(Path(sys.executable).parent)) or shutil.which("awscurl")


@pytest.mark.skipif(AWSCURL is None, reason="awscurl is not installed (it is a dev dependency)")
def test_awscurl_gets_a_token_and_reports_it(gateway: LocalGateway) -> None:
    assert AWSCURL is not None
    sigv4 = ["--service", "execute-api", "--region", "us-east-1", "--access_key", KEY, "--secret_key", SECRET]
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}

    # awscurl encodes the query itself (the README says so): the URL carries a plain space.
    got = subprocess.run([AWSCURL, *sigv4, token_url(gateway, "scope=cx.agent-calls cx.queue-calls")],
                         capture_output=True, text=True, env=env, timeout=60, check=False)
    assert got.returncode == 0, got.stderr
    answer = json.loads(got.stdout)
    assert answer["scope"] == SCOPES

    query = f"scope=cx.agent-calls cx.queue-calls&fingerprint={answer['fingerprint']}"
    reported = subprocess.run([AWSCURL, *sigv4, "-X", "DELETE", token_url(gateway, query)], capture_output=True,
                              text=True, env=env, timeout=60, check=False)
    assert reported.returncode == 0, reported.stderr
    assert gateway.requests[-1][1] == 204


# -- the command line ---------------------------------------------------------------------------


PYTHON_M = (sys.executable, "-m", "sangoma_token_client")
# The console script pyproject.toml declares, installed next to this Python by `make` (layers/client, editable).
SCRIPT = shutil.which("sangoma-token", path=str(Path(sys.executable).parent))


def run_cli(*args: str, key: str = KEY, secret: str = SECRET, stdin: str | None = None,
            command: Sequence[str] = PYTHON_M, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """The command line in a clean environment: credentials, and no region configured anywhere."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
                           "SANGOMA_TOKEN_VENDING_URL", "SANGOMA_TOKEN_VENDING_REGION")}
    env.update({"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "PYTHONPATH": str(ROOT / "layers" / "client" / "python"), **extra_env})
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, input=stdin, timeout=60,
                          check=False)


def installed_script() -> list[str]:
    assert SCRIPT, f"no sangoma-token next to {sys.executable}: run `make .venv/.installed` (layers/client, editable)"
    return [SCRIPT]


def test_the_sangoma_token_script_gets_a_token_and_reports_it(gateway: LocalGateway) -> None:
    script = installed_script()
    got = run_cli("get", "--url", gateway.url, "--app", "demo", "--scope", SCOPES, command=script)
    assert got.returncode == 0, got.stderr
    answer = json.loads(got.stdout)
    assert answer["scope"] == SCOPES

    reported = run_cli("report", "--url", gateway.url, "--app", "demo", "--scope", SCOPES,
                       "--fingerprint", answer["fingerprint"], command=script)

    assert reported.returncode == 0, reported.stderr
    assert gateway.requests[-1] == (
        f"DELETE /apps/demo/token?fingerprint={answer['fingerprint']}&scope=cx.agent-calls%20cx.queue-calls", 204)


def test_the_sangoma_token_script_fails_like_python_m(gateway: LocalGateway) -> None:
    args = ("get", "--url", gateway.url, "--app", "demo", "--scope", "cx.admin")
    script, python_m = run_cli(*args, command=installed_script()), run_cli(*args)

    assert (script.returncode, script.stdout, script.stderr) == (python_m.returncode, python_m.stdout, python_m.stderr)
    assert script.returncode == 1
    assert script.stderr.startswith("error: invalid_scope: ")


@pytest.mark.parametrize(("command", "usage"), [
    ("script", "usage: sangoma-token "),
    ("python -m", "usage: python -m sangoma_token_client "),
])
def test_cli_help_names_how_it_was_started_and_the_failure_format(command: str, usage: str) -> None:
    result = run_cli("--help", command=installed_script() if command == "script" else PYTHON_M)

    assert result.returncode == 0
    assert result.stdout.startswith(usage)
    # What main() prints on a failure (the tests above check it does):
    assert "Failures print `error: code: description`" in result.stdout


def test_cli_get_prints_the_answer_as_json(gateway: LocalGateway) -> None:
    result = run_cli("get", "--url", gateway.url, "--region", "us-east-1", "--app", "demo", "--scope", SCOPES)

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert set(answer) == {"access_token", "token_type", "scope", "expires_in", "expires_at", "fingerprint"}
    assert answer["scope"] == SCOPES
    assert result.stderr == ""


def test_cli_in_its_documented_form_needs_no_region_against_the_local_gateway(gateway: LocalGateway) -> None:
    # `python -m sangoma_token_client get --url URL --app APP --scope "a b"`, with no region set anywhere:
    # a loopback URL signs for the local gateway's region.
    result = run_cli("get", "--url", gateway.url, "--app", "demo", "--scope", SCOPES)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["scope"] == SCOPES


def test_cli_against_the_local_gateway_signs_for_it_whatever_region_the_shell_has(gateway: LocalGateway) -> None:
    # A developer's shell set up for their own region (AWS_REGION=eu-west-1) and the local gateway's URL: the
    # client signs for the local stack's region, which the gateway accepts.
    result = run_cli("get", "--url", gateway.url, "--app", "demo", "--scope", SCOPES, AWS_REGION="eu-west-1",
                     AWS_DEFAULT_REGION="eu-west-1")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["scope"] == SCOPES


def test_cli_with_a_region_passed_signs_for_it_and_the_gateway_names_the_one_it_expects(
        gateway: LocalGateway) -> None:
    result = run_cli("get", "--url", gateway.url, "--region", "eu-west-1", "--app", "demo", "--scope", SCOPES)

    assert result.returncode == 1
    assert ("Credential should be scoped to a valid region, not 'eu-west-1'. This gateway expects 'us-east-1'."
            in result.stderr)


def test_cli_without_any_region_for_another_host_says_what_to_set() -> None:
    result = run_cli("get", "--url", "https://vending.internal.example/v1", "--app", "demo", "--scope", SCOPES)

    assert result.returncode == 1
    assert result.stderr.startswith("error: no_region: ")
    assert "--region" in result.stderr and "AWS_REGION" in result.stderr and "AWS_DEFAULT_REGION" in result.stderr


def test_cli_failure_exits_non_zero_with_the_error_on_stderr(gateway: LocalGateway) -> None:
    result = run_cli("get", "--url", gateway.url, "--region", "us-east-1", "--app", "demo", "--scope", "cx.admin")

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: invalid_scope: ")


def test_cli_signature_failure_names_api_gateways_error(gateway: LocalGateway) -> None:
    result = run_cli("get", "--url", gateway.url, "--region", "us-east-1", "--app", "demo", "--scope", SCOPES,
                     secret="wrong")

    assert result.returncode == 1
    assert result.stderr.startswith("error: InvalidSignatureException: The request signature we calculated")


def test_cli_report_takes_the_token_on_stdin(gateway: LocalGateway) -> None:
    answer = json.loads(run_cli("get", "--url", gateway.url, "--region", "us-east-1", "--app", "demo",
                                "--scope", SCOPES).stdout)

    result = run_cli("report", "--url", gateway.url, "--region", "us-east-1", "--app", "demo", "--scope", SCOPES,
                     "--token-stdin", stdin=answer["access_token"] + "\n")

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith(f"reported {answer['fingerprint']} for demo (cx.agent-calls cx.queue-calls): "
                                    "dropped; the next get fetches a new one")
    again = run_cli("report", "--url", gateway.url, "--region", "us-east-1", "--app", "demo", "--scope", SCOPES,
                    "--token-stdin", stdin=answer["access_token"] + "\n")
    assert again.returncode == 0, again.stderr
    assert "not the cached token any more (it was replaced already): nothing dropped" in again.stderr
    assert answer["access_token"] not in result.stderr
    assert gateway.requests[-1] == (
        f"DELETE /apps/demo/token?fingerprint={answer['fingerprint']}&scope=cx.agent-calls%20cx.queue-calls", 204)


def retry_at(stderr: str, seconds: int) -> datetime:
    """The time in the CLI's `retry after N s..., at HH:MM:SS UTC` line, as today's (or tomorrow's) instant."""
    match = re.search(rf"^retry after {seconds} s(?: \({seconds // 60} min\))?, at (\d\d:\d\d:\d\d) UTC$", stderr,
                      re.M)
    assert match, stderr
    return datetime.strptime(match.group(1), "%H:%M:%S").replace(tzinfo=UTC)


def seconds_of_day(moment: datetime) -> int:
    return moment.hour * 3600 + moment.minute * 60 + moment.second


@pytest.mark.parametrize("seconds", [60, 480])
def test_cli_get_says_when_to_come_back_and_exits_3_on_a_503(gateway: LocalGateway, lam: Lambda,
                                                               seconds: int) -> None:
    # A service owner tells "retry in a minute" from "retry in eight".
    lam.stack.token_endpoint.queue(Reply(503, "busy", headers={"Retry-After": str(seconds)}))
    before = datetime.now(UTC)

    result = run_cli("get", "--url", gateway.url, "--app", "demo", "--scope", SCOPES)

    after = datetime.now(UTC)
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr.startswith("error: upstream_unavailable: ")
    at = seconds_of_day(retry_at(result.stderr, seconds))
    # The time printed is the answer's time plus the seconds (on the clock, modulo midnight).
    window = {seconds_of_day(before + timedelta(seconds=seconds + step)) for step in
              range(int((after - before).total_seconds()) + 2)}
    assert at in window


def test_cli_report_refused_as_too_early_says_so_and_when_and_exits_3(gateway: LocalGateway,
                                                                     settings_env: Any) -> None:
    settings_env(MIN_REPORT_AGE_SECONDS=3600)
    answer = json.loads(run_cli("get", "--url", gateway.url, "--app", "demo", "--scope", SCOPES).stdout)

    result = run_cli("report", "--url", gateway.url, "--app", "demo", "--scope", SCOPES,
                     "--fingerprint", answer["fingerprint"])

    assert result.returncode == 3
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: slow_down: ")
    assert lines[1].startswith("refused as too early: the token is younger than the service's minimum report age, "
                               "so it is kept")
    assert re.fullmatch(r"retry after (3600 s \(60 min\)|359\d s \(60 min\)), at \d\d:\d\d:\d\d UTC", lines[2])
    assert [status for _, status in gateway.requests] == [200, 429]  # asked once: not waited for


@pytest.mark.usefixtures("budget_hour")
def test_cli_a_spent_mint_budget_is_come_back_later_too(gateway: LocalGateway, settings_env: Any) -> None:
    settings_env(MAX_MINTS_PER_APP_PER_HOUR=1)
    answer = json.loads(run_cli("get", "--url", gateway.url, "--app", "demo", "--scope", SCOPES).stdout)
    assert run_cli("report", "--url", gateway.url, "--app", "demo", "--scope", SCOPES,
                   "--fingerprint", answer["fingerprint"]).returncode == 0  # dropped: the next get must mint

    result = run_cli("get", "--url", gateway.url, "--app", "demo", "--scope", SCOPES)

    assert result.returncode == 3
    assert result.stderr.startswith("error: mint_limit_reached: ")
    assert re.search(r"^retry after \d+ s.*, at \d\d:\d\d:\d\d UTC$", result.stderr, re.M), result.stderr


def test_cli_refuses_plain_http_to_another_machine_before_signing_anything() -> None:
    result = run_cli("get", "--url", "http://vending.internal.example/v1", "--region", "us-east-1", "--app", "demo",
                     "--scope", SCOPES)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: insecure_url: plain http is only for a loopback address")
    assert SECRET not in result.stderr


def test_cli_without_a_url_is_a_usage_error() -> None:
    env_free = run_cli("get", "--app", "demo", "--scope", SCOPES)

    assert env_free.returncode == 2
    assert "no_url" in env_free.stderr


# -- make serve and sam local invoke ------------------------------------------------------------


def test_demo_credentials_file_works_with_the_gateway(lam: Lambda) -> None:
    principals = load_credentials(DEMO_CREDENTIALS)
    lam.stack.add_app("demo", allowed_callers=[p.principal_arn for p in principals.values()])
    key, principal = next(iter(principals.items()))

    with LocalGateway(principals) as gateway:
        token = client_for(gateway, key, principal.secret_access_key).get_token("demo", SCOPES)

    assert token.scope == SCOPES


@needs_curl
def test_make_serve_prints_a_curl_command_that_gets_a_token(tmp_path: Path) -> None:
    """What a new user does: start the server, paste the curl command it prints."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "functions"), str(ROOT)]),
           "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "devstack.serve", "--gateway-port", "0", "--moto-port", "0",
                               "--token-port", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            lines.append(line)
            if line.strip().startswith("curl --aws-sigv4"):
                lines.append(server.stdout.readline())
                break
        command = re.sub(r"\\\n\s*", "", "".join(lines[-2:])).strip()
        assert command.startswith("curl --aws-sigv4"), "".join(lines)

        result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30, check=False)  # noqa: S602

        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["scope"] == SCOPES
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_env_vars_file_points_sam_local_invoke_at_the_serve_stack() -> None:
    from devstack import serve
    from devstack.stack import KEY_ALIAS, SECRET_PREFIX, TABLE_NAME
    from devstack.template import resource

    overrides = json.loads((ROOT / "events" / "env.json").read_text())["TokenVendingFunction"]
    declared = resource("TokenVendingFunction")["Properties"]["Environment"]["Variables"]

    # sam local invoke ignores --env-vars entries the template does not declare, and the template declares no
    # AWS_* variable: the SDK's endpoint comes from the image it is invoked with (docs/operations.md).
    assert set(overrides) <= set(declared)
    assert not [name for name in overrides if name.startswith("AWS_")]
    assert overrides["TOKEN_URL"] == f"http://host.docker.internal:{serve.TOKEN_STUB_PORT}/oauth/token"
    assert (overrides["TOKEN_TABLE_NAME"], overrides["TOKEN_KMS_KEY_ID"], overrides["SECRET_PREFIX"]) == (
        TABLE_NAME, KEY_ALIAS, SECRET_PREFIX)
