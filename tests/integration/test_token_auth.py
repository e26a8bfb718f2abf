"""TokenAuth over real HTTP: a requests session against a stand-in CX API on 127.0.0.1, its tokens vended
through the local SigV4 gateway by the real handler (moto, the stub token endpoint)."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Iterator

import botocore.session
import pytest
import requests
from sangoma_token_client import TokenAuth, TokenClient, TokenVendingError, fingerprint

from devstack.gateway import LocalGateway, Principal, load_credentials
from tests.documents import ROOT, blocks

from .conftest import CALLER_SESSION, SCOPES, Lambda
from .cx_api import CxApiStub
from .operator_commands import shell_env
from .test_serve import Served

KEY, SECRET = "AKIATESTTOKENAUTH001", "test-token-auth-secret"
DEMO_KEY = "AKIALOCALDEMO0000001"  # make serve's key for the local demo caller (devstack/local-credentials.json)


@pytest.fixture
def gateway(lam: Lambda) -> Iterator[LocalGateway]:
    with LocalGateway({KEY: Principal(KEY, SECRET, CALLER_SESSION)}) as gateway:
        yield gateway


@pytest.fixture
def cx() -> Iterator[CxApiStub]:
    with CxApiStub() as stub:
        yield stub


@pytest.fixture
def client(gateway: LocalGateway) -> TokenClient:
    session = botocore.session.Session()
    session.set_credentials(KEY, SECRET)
    return TokenClient(gateway.url, region="us-east-1", session=session)


@pytest.fixture
def session(client: TokenClient) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.auth = TokenAuth(client, "demo", SCOPES)
        yield session


def vending_calls(gateway: LocalGateway) -> list[tuple[str, int]]:
    """(method, status) of each request that reached the vending API."""
    return [(line.split(" ")[0], status) for line, status in gateway.requests]


def test_every_request_carries_the_vended_token_as_a_bearer_header(
        session: requests.Session, client: TokenClient, cx: CxApiStub, gateway: LocalGateway) -> None:
    first = session.get(f"{cx.url}/v1/calls")
    second = session.get(f"{cx.url}/v1/queues")

    assert (first.status_code, second.status_code) == (200, 200)
    token = client.get_token("demo", SCOPES)
    assert [request.token for request in cx.received] == [token.access_token] * 2
    assert first.request.headers["Authorization"] == f"Bearer {token.access_token}"  # the answer's type: bearer
    assert vending_calls(gateway) == [("GET", 200)]  # the client's memory serves the second


def test_a_rejected_token_is_reported_and_the_request_sent_once_more_with_a_new_one_and_the_same_body(
        session: requests.Session, client: TokenClient, cx: CxApiStub, gateway: LocalGateway, lam: Lambda) -> None:
    assert session.get(f"{cx.url}/v1/calls").status_code == 200
    old = client.get_token("demo", SCOPES).access_token
    cx.refuse(old)  # the CX API stops accepting it (revoked, or renewed on Sangoma's side)

    answer = session.post(f"{cx.url}/v1/calls", json={"to": "+15551234567"})

    assert answer.status_code == 200
    retried = cx.received[1:]
    assert [request.method for request in retried] == ["POST", "POST"]
    new = retried[1].token
    assert retried[0].token == old and new not in (None, old)
    assert retried[0].body == retried[1].body == b'{"to": "+15551234567"}'  # sent again whole
    assert answer.json()["body"] == '{"to": "+15551234567"}'
    assert [response.status_code for response in answer.history] == [401]  # requests' way to show the first
    assert vending_calls(gateway) == [("GET", 200), ("DELETE", 204), ("GET", 200)]
    assert lam.stack.token_endpoint.request_count == 2  # the report dropped the old one: one new mint
    assert session.get(f"{cx.url}/v1/calls").status_code == 200  # and the new one is kept from then on
    assert cx.received[-1].token == new
    assert len(gateway.requests) == 3


def test_a_cx_api_that_refuses_everything_sees_exactly_two_requests_and_the_caller_gets_its_401(
        session: requests.Session, cx: CxApiStub, gateway: LocalGateway) -> None:
    cx.refuse_all = True

    answer = session.get(f"{cx.url}/v1/calls")

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'  # the CX API's answer, as it came
    assert answer.json() == {"message": "Unauthorized"}
    assert len(cx.received) == 2
    assert cx.received[0].token != cx.received[1].token
    assert vending_calls(gateway) == [("GET", 200), ("DELETE", 204), ("GET", 200)]  # one report, no loop


def test_a_report_refused_as_too_early_means_no_resend_and_the_401_as_it_came(
        session: requests.Session, cx: CxApiStub, gateway: LocalGateway, settings_env: object) -> None:
    settings_env(MIN_REPORT_AGE_SECONDS=3600)  # type: ignore[operator]
    cx.refuse_all = True  # e.g. a scope the CX API wants and the token lacks: a new token would not help

    answer = session.get(f"{cx.url}/v1/calls")

    assert answer.status_code == 401
    assert answer.history == []
    assert len(cx.received) == 1
    assert vending_calls(gateway) == [("GET", 200), ("DELETE", 429)]  # slow_down, asked once, not waited for


def test_a_report_refused_as_too_early_is_not_waited_for_even_when_the_wait_is_short(
        gateway: LocalGateway, cx: CxApiStub, settings_env: object) -> None:
    settings_env(MIN_REPORT_AGE_SECONDS=5)  # type: ignore[operator]
    session = botocore.session.Session()
    session.set_credentials(KEY, SECRET)
    waits: list[float] = []
    client = TokenClient(gateway.url, region="us-east-1", session=session, sleep=waits.append)
    cx.refuse_all = True

    answer = requests.get(f"{cx.url}/v1/calls", auth=TokenAuth(client, "demo", SCOPES), timeout=30)

    assert answer.status_code == 401
    assert waits == []  # Retry-After (5 s or less) is within what the client waits for a 429, but not for this one
    assert vending_calls(gateway) == [("GET", 200), ("DELETE", 429)]


def test_a_body_that_cannot_be_sent_twice_is_not_resent_but_its_token_is_reported(
        session: requests.Session, cx: CxApiStub, gateway: LocalGateway, client: TokenClient) -> None:
    old = client.get_token("demo", SCOPES).access_token
    cx.refuse(old)

    answer = session.post(f"{cx.url}/v1/recordings", data=iter([b"chunk-1,", b"chunk-2"]))  # streamed

    assert answer.status_code == 401
    assert [(request.token, request.body) for request in cx.received] == [(old, b"chunk-1,chunk-2")]
    assert vending_calls(gateway) == [("GET", 200), ("DELETE", 204)]
    again = session.post(f"{cx.url}/v1/recordings", data=b"chunk-1,chunk-2")  # the caller's own retry
    assert again.status_code == 200
    assert cx.received[-1].token != old


def test_a_401_from_another_host_after_a_redirect_is_not_about_this_token(
        session: requests.Session, cx: CxApiStub, gateway: LocalGateway) -> None:
    with CxApiStub() as elsewhere:
        elsewhere.refuse_all = True
        cx.redirect_to = f"{elsewhere.url.replace('127.0.0.1', 'localhost')}/v1/calls"  # another host name

        answer = session.get(f"{cx.url}/v1/calls")

        assert answer.status_code == 401
        assert [request.token for request in elsewhere.received] == [None]  # requests dropped the header there
    assert vending_calls(gateway) == [("GET", 200)]  # nothing reported


def test_other_failures_of_the_report_are_raised(session: requests.Session, cx: CxApiStub, gateway: LocalGateway,
                                                 lam: Lambda) -> None:
    assert session.get(f"{cx.url}/v1/calls").status_code == 200
    cx.refuse_all = True
    # The app no longer admits this caller: its report is refused, which a resend cannot mend.
    lam.stack.add_app("demo", allowed_callers=["arn:aws:iam::111122223333:role/someone-else"])
    Lambda.new_container()

    with pytest.raises(TokenVendingError) as raised:
        session.get(f"{cx.url}/v1/calls")

    assert raised.value.error == "access_denied"
    assert len(cx.received) == 2  # the first request's 401, and no resend


def test_one_token_auth_shared_by_threads_renews_a_rejected_token_once(
        client: TokenClient, cx: CxApiStub, gateway: LocalGateway, lam: Lambda) -> None:
    auth = TokenAuth(client, "demo", SCOPES)
    old = client.get_token("demo", SCOPES).access_token
    cx.refuse(old)
    statuses: list[int] = []
    start = threading.Barrier(4)

    def call() -> None:
        with requests.Session() as session:
            start.wait()
            statuses.append(session.get(f"{cx.url}/v1/calls", auth=auth).status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 4
    # However the threads interleave, a report of the old token never drops the new one: one new mint.
    assert lam.stack.token_endpoint.request_count == 2
    assert {request.token for request in cx.received} - {old} == {client.get_token("demo", SCOPES).access_token}


def test_the_token_never_reaches_a_log_line(session: requests.Session, client: TokenClient, cx: CxApiStub,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert session.get(f"{cx.url}/v1/calls").status_code == 200
    tokens = [client.get_token("demo", SCOPES).access_token]
    cx.refuse(tokens[0])
    assert session.get(f"{cx.url}/v1/calls").status_code == 200
    tokens.append(client.get_token("demo", SCOPES).access_token)

    assert caplog.records  # urllib3 and the function did log, at DEBUG
    assert not [token for token in tokens if token in caplog.text]
    assert tokens[1] not in repr(session.auth)


# -- the README's example, as written, against make serve -----------------------------------------


def test_the_readmes_token_auth_example_calls_a_cx_api_through_make_serve(
        cx: CxApiStub, monkeypatch: pytest.MonkeyPatch) -> None:
    [example] = [block for block in blocks("python") if "TokenAuth" in block.body]
    assert len([line for line in example.body.splitlines() if line.strip()]) == 5
    served = Served()
    try:
        onboarded = subprocess.run(["bash", "-c", 'make apps ARGS="put billing examples/app-secret.json" LOCAL=1'],
                                   cwd=ROOT, env=shell_env(), capture_output=True, text=True, timeout=300,
                                   check=False)
        assert onboarded.returncode == 0, onboarded.stderr
        # The caller's shell: the local demo key (its principal is in the example app's allowed_callers).
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", DEMO_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", load_credentials()[DEMO_KEY].secret_access_key)
        monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
        namespace = {"vending_url": served.gateway_url, "cx_api_url": cx.url}

        exec(compile(example.body, example.document, "exec"), namespace)  # noqa: S102 - the documentation's own

        listed = subprocess.run(["bash", "-c", "make tokens LOCAL=1"], cwd=ROOT, env=shell_env(),
                                capture_output=True, text=True, timeout=300, check=False)
    finally:
        served.stop()
    calls = namespace["calls"]
    assert calls.status_code == 200
    assert calls.json()["path"] == "/v1/calls"
    [received] = cx.received
    assert received.token and received.token.startswith("sgm_")
    # The token the CX API saw is the one make serve's stack vended for billing to the demo key's principal.
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if " billing " in line]
    assert fingerprint(received.token) in row
    assert "arn:aws:iam::111122223333:user/local-demo-caller" in row
