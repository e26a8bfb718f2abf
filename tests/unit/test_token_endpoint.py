"""What the token endpoint's answers turn into, against a real HTTP server on 127.0.0.1.

The stub answers exactly what each test queues; no retries (max_retries=0), so one
request per fetch.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from token_vending.errors import (
    CredentialsRejected,
    UpstreamError,
    UpstreamThrottled,
    UpstreamUnavailable,
    VendingError,
)
from token_vending.settings import Settings, url_problem
from token_vending.token_endpoint import IssuedToken, TokenEndpoint

from devstack.stub_token_endpoint import Reply, StubTokenEndpoint

CLIENT_ID = "client-id-0001"
CLIENT_SECRET = "s3cr3t-Zq8vR2-never-print-me"
ACCESS_TOKEN = "sgm_tok3n-Vq9xY2-never-print-me"
BODY_MARKER = "body-marker-8f3c2a"  # free text in an answer body that must never be echoed
REQUESTED = ("cx.agent-calls", "cx.queue-calls")
MAX_LIFETIME = 2 * 365 * 86_400


def endpoint_at(url: str, deadline_seconds: float = 10) -> TokenEndpoint:
    return TokenEndpoint(Settings(token_url=url, token_connect_timeout_seconds=2, token_read_timeout_seconds=3,
                                  token_max_retries=0, token_fetch_deadline_seconds=deadline_seconds,
                                  max_token_lifetime_seconds=MAX_LIFETIME))


@pytest.fixture(scope="module")
def stub() -> Iterator[StubTokenEndpoint]:
    server = StubTokenEndpoint().start()
    yield server
    server.stop()


@pytest.fixture
def endpoint(stub: StubTokenEndpoint) -> TokenEndpoint:
    stub.reset()
    stub.clients[CLIENT_ID] = CLIENT_SECRET
    return endpoint_at(stub.url, deadline_seconds=10)


def answer(**fields: Any) -> dict[str, Any]:
    """A good answer, with fields replaced (or removed, with the value `...`)."""
    body: dict[str, Any] = {"access_token": ACCESS_TOKEN, "token_type": "bearer", "scope": " ".join(REQUESTED),
                            "expires_in": 24_304_413, "note": BODY_MARKER}
    for name, value in fields.items():
        if value is ...:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def fetch(endpoint: TokenEndpoint, stub: StubTokenEndpoint, reply: Reply,
          scopes: tuple[str, ...] = REQUESTED) -> IssuedToken:
    stub.queue(reply)
    try:
        return endpoint.fetch(CLIENT_ID, CLIENT_SECRET, scopes)
    finally:
        assert stub.request_count == 1


def fetch_error(endpoint: TokenEndpoint, stub: StubTokenEndpoint, reply: Reply,
                expected: type[VendingError] = UpstreamError) -> VendingError:
    with pytest.raises(expected) as caught:
        fetch(endpoint, stub, reply)
    assert_nothing_leaks(caught.value)
    return caught.value


def assert_nothing_leaks(error: VendingError) -> None:
    for text in (error.description, str(error), repr(error)):
        for secret in (ACCESS_TOKEN, CLIENT_SECRET, BODY_MARKER):
            assert secret not in text
    assert error.__cause__ is None  # nothing chained that could quote the body in a traceback


def assert_upstream_error(error: VendingError) -> None:
    assert type(error) is UpstreamError
    assert error.status == 502
    assert error.code == "upstream_error"


# --- the request ------------------------------------------------------------------------------------------


def test_request_is_a_client_credentials_grant_with_basic_auth(endpoint: TokenEndpoint,
                                                               stub: StubTokenEndpoint) -> None:
    issued = endpoint.fetch(CLIENT_ID, CLIENT_SECRET, REQUESTED)
    (received,) = stub.received
    assert received.content_type == "application/x-www-form-urlencoded"
    assert received.authorization == "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert received.form == {"grant_type": ["client_credentials"], "scope": ["cx.agent-calls cx.queue-calls"]}
    assert issued.token_type == "bearer"
    assert parse_qs("scope=" + "cx.agent-calls%20cx.queue-calls")["scope"] == [received.scope]


def test_good_answer(endpoint: TokenEndpoint, stub: StubTokenEndpoint) -> None:
    issued = fetch(endpoint, stub, Reply(200, answer()))
    assert issued.access_token == ACCESS_TOKEN
    assert issued.token_type == "bearer"
    assert issued.expires_in == 24_304_413
    assert ACCESS_TOKEN not in repr(issued)


# --- expires_in -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [
        pytest.param(3600, 3600, id="int"),
        pytest.param(1, 1, id="one"),
        pytest.param(3600.0, 3600, id="float"),
        pytest.param(3600.9, 3600, id="fractional-float"),
        pytest.param("3600", 3600, id="numeric-string"),
        pytest.param("3600.5", 3600, id="fractional-string"),
        pytest.param(" 3600 ", 3600, id="string-with-spaces"),
        pytest.param(24_304_413, 24_304_413, id="sangoma-example"),
    ],
)
def test_usable_expires_in(endpoint: TokenEndpoint, stub: StubTokenEndpoint, expires_in: Any,
                           expected: int) -> None:
    assert fetch(endpoint, stub, Reply(200, answer(expires_in=expires_in))).expires_in == expected


@pytest.mark.parametrize(
    "expires_in",
    [
        pytest.param(-1, id="negative"),
        pytest.param(-3600.5, id="negative-float"),
        pytest.param("-3600", id="negative-string"),
        pytest.param(0, id="zero"),
        pytest.param(0.0, id="zero-float"),
        pytest.param("0", id="zero-string"),
        pytest.param("soon", id="non-numeric"),
        pytest.param("", id="empty-string"),
        pytest.param("3600s", id="with-unit"),
        pytest.param("NaN", id="nan-string"),
        pytest.param("Infinity", id="infinity-string"),
        pytest.param("inf", id="inf-string"),
        pytest.param(None, id="null"),
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param([3600], id="list"),
        pytest.param({"seconds": 3600}, id="object"),
    ],
)
def test_unusable_expires_in_is_upstream_error(endpoint: TokenEndpoint, stub: StubTokenEndpoint,
                                               expires_in: Any) -> None:
    assert_upstream_error(fetch_error(endpoint, stub, Reply(200, answer(expires_in=expires_in))))


def test_an_answer_without_expires_in_lives_the_default_lifetime(stub: StubTokenEndpoint) -> None:
    stub.reset()
    stub.clients[CLIENT_ID] = CLIENT_SECRET
    endpoint = TokenEndpoint(Settings(token_url=stub.url, default_token_lifetime_seconds=900))

    issued = fetch(endpoint, stub, Reply(200, answer(expires_in=...)))  # RFC 6749 §5.1 only recommends it

    assert (issued.expires_in, issued.default_lifetime) == (900, True)
    stub.reset()
    stub.clients[CLIENT_ID] = CLIENT_SECRET
    assert fetch(endpoint, stub, Reply(200, answer())).default_lifetime is False


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_json_numbers_are_unusable(endpoint: TokenEndpoint, stub: StubTokenEndpoint,
                                              literal: str) -> None:
    raw = f'{{"access_token": "{ACCESS_TOKEN}", "token_type": "bearer", "expires_in": {literal}}}'
    assert_upstream_error(fetch_error(endpoint, stub, Reply(200, raw)))


@pytest.mark.parametrize(
    "expires_in",
    [
        pytest.param(MAX_LIFETIME + 1, id="just-beyond"),
        pytest.param(10 * 365 * 86_400, id="ten-years"),
        pytest.param(2**53, id="2^53"),
        pytest.param(1e300, id="1e300"),
        pytest.param(str(10 * 365 * 86_400), id="string"),
    ],
)
def test_absurd_expires_in_is_capped(endpoint: TokenEndpoint, stub: StubTokenEndpoint, expires_in: Any) -> None:
    assert fetch(endpoint, stub, Reply(200, answer(expires_in=expires_in))).expires_in == MAX_LIFETIME


def test_expires_in_at_the_cap_is_kept(endpoint: TokenEndpoint, stub: StubTokenEndpoint) -> None:
    assert fetch(endpoint, stub, Reply(200, answer(expires_in=MAX_LIFETIME))).expires_in == MAX_LIFETIME


def test_huge_integer_expires_in_is_capped(endpoint: TokenEndpoint, stub: StubTokenEndpoint) -> None:
    raw = f'{{"access_token": "{ACCESS_TOKEN}", "token_type": "bearer", "expires_in": 1{"0" * 400}}}'
    assert fetch(endpoint, stub, Reply(200, raw)).expires_in == MAX_LIFETIME


# --- scope ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", [..., None], ids=["absent", "null"])
def test_absent_granted_scope_means_the_requested_scope(endpoint: TokenEndpoint, stub: StubTokenEndpoint,
                                                        scope: Any) -> None:
    assert fetch(endpoint, stub, Reply(200, answer(scope=scope))).access_token == ACCESS_TOKEN  # accepted


@pytest.mark.parametrize(
    "scope",
    [
        "cx.queue-calls cx.agent-calls",
        "cx.agent-calls cx.queue-calls cx.agent-calls",
        " cx.agent-calls  cx.queue-calls ",
    ],
    ids=["reordered", "duplicated", "extra-spaces"],
)
def test_same_scope_set_in_another_form_is_accepted(endpoint: TokenEndpoint, stub: StubTokenEndpoint,
                                                     scope: str) -> None:
    assert fetch(endpoint, stub, Reply(200, answer(scope=scope))).access_token == ACCESS_TOKEN  # accepted


@pytest.mark.parametrize(
    "scope",
    [
        pytest.param("cx.agent-calls", id="narrower"),
        pytest.param("cx.queue-calls", id="narrower-other"),
        pytest.param("", id="empty"),
        pytest.param("cx.agent-calls cx.queue-calls cx.admin", id="broader"),
        pytest.param("cx.agent-calls cx.other", id="different"),
        pytest.param("CX.AGENT-CALLS CX.QUEUE-CALLS", id="different-case"),
    ],
)
def test_a_different_granted_scope_is_upstream_error(endpoint: TokenEndpoint, stub: StubTokenEndpoint,
                                                     scope: str) -> None:
    assert_upstream_error(fetch_error(endpoint, stub, Reply(200, answer(scope=scope))))


def test_single_scope_request(endpoint: TokenEndpoint, stub: StubTokenEndpoint) -> None:
    issued = fetch(endpoint, stub, Reply(200, answer(scope="cx.agent-calls")), scopes=("cx.agent-calls",))
    assert issued.access_token == ACCESS_TOKEN


# --- token_type -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token_type", "expected"),
    [
        pytest.param(..., "bearer", id="missing-defaults-to-bearer"),
        pytest.param("Bearer", "Bearer", id="kept-as-given"),
        pytest.param("BEARER", "BEARER", id="any-case"),
        pytest.param("bearer", "bearer", id="lowercase"),
    ],
)
def test_token_type(endpoint: TokenEndpoint, stub: StubTokenEndpoint, token_type: Any, expected: str) -> None:
    assert fetch(endpoint, stub, Reply(200, answer(token_type=token_type))).token_type == expected


@pytest.mark.parametrize("token_type", ["mac", "DPoP", "", None, 42, ["bearer"]])
def test_a_token_type_other_than_bearer_is_upstream_error(endpoint: TokenEndpoint, stub: StubTokenEndpoint,
                                                          token_type: Any) -> None:
    assert_upstream_error(fetch_error(endpoint, stub, Reply(200, answer(token_type=token_type))))


# --- access_token and body shape --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "access_token",
    [pytest.param(..., id="missing"), pytest.param("", id="empty"), pytest.param(None, id="null"),
     pytest.param(12345, id="number"), pytest.param([ACCESS_TOKEN], id="list")],
)
def test_unusable_access_token_is_upstream_error(endpoint: TokenEndpoint, stub: StubTokenEndpoint,
                                                 access_token: Any) -> None:
    assert_upstream_error(fetch_error(endpoint, stub, Reply(200, answer(access_token=access_token))))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(f"<html>{BODY_MARKER} {ACCESS_TOKEN}</html>", id="html"),
        pytest.param(f"access_token={ACCESS_TOKEN}&expires_in=3600&x={BODY_MARKER}", id="form-encoded"),
        pytest.param(f'{{"access_token": "{ACCESS_TOKEN}", "x": "{BODY_MARKER}"', id="truncated-json"),
        pytest.param("", id="empty"),
        pytest.param([ACCESS_TOKEN, BODY_MARKER], id="json-array"),
        pytest.param([answer()], id="json-array-of-answer"),
        pytest.param(f'"{ACCESS_TOKEN} {BODY_MARKER}"', id="json-string"),
        pytest.param("3600", id="json-number"),
        pytest.param("null", id="json-null"),
    ],
)
def test_non_object_answers_are_upstream_error(endpoint: TokenEndpoint, stub: StubTokenEndpoint,
                                               body: Any) -> None:
    assert_upstream_error(fetch_error(endpoint, stub, Reply(200, body)))


# --- refusals and unavailability (the status codes around the answer) -------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(401, {"error": "invalid_client", "error_description": BODY_MARKER}), id="401"),
        pytest.param(Reply(400, {"error": "invalid_client", "error_description": BODY_MARKER}), id="400-client"),
        pytest.param(Reply(401, f"<html>{BODY_MARKER}</html>"), id="401-html"),
    ],
)
def test_rejected_credentials(endpoint: TokenEndpoint, stub: StubTokenEndpoint, reply: Reply) -> None:
    error = fetch_error(endpoint, stub, reply, CredentialsRejected)
    assert error.status == 502
    assert error.code == "upstream_error"


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(400, {"error": "invalid_scope", "error_description": BODY_MARKER}), id="400-scope"),
        pytest.param(Reply(403, {"error": "access_denied", "error_description": BODY_MARKER}), id="403"),
        pytest.param(Reply(404, f"not here {BODY_MARKER}"), id="404"),
        pytest.param(Reply(201, answer()), id="201-with-token"),
    ],
)
def test_other_refusals_are_upstream_error(endpoint: TokenEndpoint, stub: StubTokenEndpoint, reply: Reply) -> None:
    assert_upstream_error(fetch_error(endpoint, stub, reply))


@pytest.mark.parametrize("code", ["invalid_request", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
                                  "invalid_scope"])
def test_a_refusal_names_the_endpoints_registered_error_code(endpoint: TokenEndpoint, stub: StubTokenEndpoint,
                                                              code: str) -> None:
    error = fetch_error(endpoint, stub, Reply(400, {"error": code, "error_description": BODY_MARKER}))

    assert error.description == f"the token endpoint refused the request (400 {code})"


@pytest.mark.parametrize("code", ["access_denied", "server_error", "temporarily_unavailable", "custom_code",
                                  f"invalid_{BODY_MARKER}", "x" * 30])
def test_a_refusal_names_no_other_error_code(endpoint: TokenEndpoint, stub: StubTokenEndpoint, code: str) -> None:
    error = fetch_error(endpoint, stub, Reply(403, {"error": code}))

    assert error.description == "the token endpoint refused the request (403)"


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_unavailable_without_retry_after(endpoint: TokenEndpoint, stub: StubTokenEndpoint, status: int) -> None:
    error = fetch_error(endpoint, stub, Reply(status, f"busy {BODY_MARKER}"), UpstreamUnavailable)
    assert not isinstance(error, UpstreamThrottled)
    assert error.status == 503
    assert error.code == "upstream_unavailable"
    assert error.retry_after is not None and error.retry_after > 0


@pytest.mark.parametrize(("header", "expected"), [("7", 7), ("120", 120)])
def test_throttled_with_retry_after(endpoint: TokenEndpoint, stub: StubTokenEndpoint, header: str,
                                    expected: int) -> None:
    error = fetch_error(endpoint, stub, Reply(429, BODY_MARKER, headers={"Retry-After": header}), UpstreamThrottled)
    assert error.status == 503
    assert error.retry_after == expected


def test_connection_reset_is_unavailable(endpoint: TokenEndpoint, stub: StubTokenEndpoint) -> None:
    error = fetch_error(endpoint, stub, Reply(reset=True), UpstreamUnavailable)
    assert error.status == 503


# --- nothing leaks into logs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(200, answer()), id="ok"),
        pytest.param(Reply(200, answer(expires_in=10 * 365 * 86_400)), id="capped"),
        pytest.param(Reply(200, answer(scope="cx.agent-calls")), id="narrower"),
        pytest.param(Reply(200, answer(expires_in="never")), id="bad-expires-in"),
        pytest.param(Reply(200, f"<html>{BODY_MARKER} {ACCESS_TOKEN}</html>"), id="not-json"),
        pytest.param(Reply(400, {"error": f"invalid {BODY_MARKER}", "error_description": ACCESS_TOKEN}),
                     id="refusal-with-free-text"),
        pytest.param(Reply(401, {"error": "invalid_client", "error_description": BODY_MARKER}), id="401"),
        pytest.param(Reply(503, f"busy {BODY_MARKER}", headers={"Retry-After": "3"}), id="503"),
    ],
)
def test_logs_never_hold_the_token_secret_or_body(endpoint: TokenEndpoint, stub: StubTokenEndpoint, reply: Reply,
                                                  captured_logs: Callable[[], str]) -> None:
    stub.queue(reply)
    try:
        endpoint.fetch(CLIENT_ID, CLIENT_SECRET, REQUESTED)
    except VendingError as error:
        assert_nothing_leaks(error)
    text = captured_logs()
    for secret in (ACCESS_TOKEN, CLIENT_SECRET, BODY_MARKER):
        assert secret not in text
    if text.strip():
        for line in text.strip().splitlines():
            if line.startswith("{"):
                json.loads(line)  # structured lines, not tracebacks


@pytest.mark.parametrize("expires_in", [0.5, "0.999", 1e-9])
def test_sub_second_expires_in_never_becomes_a_zero_lifetime(endpoint: TokenEndpoint, stub: StubTokenEndpoint,
                                                             expires_in: Any) -> None:
    stub.queue(Reply(200, answer(expires_in=expires_in)))
    try:
        issued = endpoint.fetch(CLIENT_ID, CLIENT_SECRET, REQUESTED)
    except UpstreamError:
        return  # unusable: fine
    assert issued.expires_in > 0


# --- bounded answers: whatever the endpoint (or a proxy before it) sends ----------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_is_upstream_error(endpoint: TokenEndpoint, stub: StubTokenEndpoint,
                                                          status: int) -> None:
    # Were it followed, the grant (with the Basic credentials) would be posted to the Location: a second request.
    error = fetch_error(endpoint, stub, Reply(status, "", headers={"Location": stub.url}))
    assert_upstream_error(error)
    assert "redirect" in error.description


def test_an_answer_over_64_kib_is_upstream_error(endpoint: TokenEndpoint, stub: StubTokenEndpoint) -> None:
    assert_upstream_error(fetch_error(endpoint, stub, Reply(200, answer(padding="x" * 64 * 1024))))


def test_an_answer_just_under_64_kib_is_read(endpoint: TokenEndpoint, stub: StubTokenEndpoint) -> None:
    padding = "x" * (64 * 1024 - len(json.dumps(answer(padding=""))))
    assert fetch(endpoint, stub, Reply(200, answer(padding=padding))).access_token == ACCESS_TOKEN


@pytest.mark.parametrize("nested", ["[" * 200_000 + "]" * 200_000, '{"a":' * 30_000 + "1" + "}" * 30_000])
def test_deeply_nested_json_is_upstream_error(endpoint: TokenEndpoint, stub: StubTokenEndpoint, nested: str) -> None:
    if len(nested) > 64 * 1024:
        nested = nested[: 32 * 1024] + nested[-32 * 1024:]  # still nested thousands deep, within the size cap
    assert_upstream_error(fetch_error(endpoint, stub, Reply(200, nested)))


@pytest.mark.parametrize("access_token", [
    pytest.param("has space", id="space"), pytest.param("quote\"d", id="quote"), pytest.param("semi;colon", id="semi"),
    pytest.param("=leading", id="leading-equals"), pytest.param("tok\u00e9n", id="non-ascii"),
    pytest.param("a" * 4097, id="over-4096-bytes"), pytest.param("line\nbreak", id="newline"),
])
def test_an_access_token_that_is_not_a_bearer_b64token_is_upstream_error(
        endpoint: TokenEndpoint, stub: StubTokenEndpoint, access_token: str) -> None:
    assert_upstream_error(fetch_error(endpoint, stub, Reply(200, answer(access_token=access_token))))


@pytest.mark.parametrize("access_token", ["a" * 4096, "abc-._~+/XYZ09==", "eyJhbGciOi.eyJzdWIi.c2ln"])
def test_b64tokens_up_to_4096_bytes_are_accepted(endpoint: TokenEndpoint, stub: StubTokenEndpoint,
                                                 access_token: str) -> None:
    assert fetch(endpoint, stub, Reply(200, answer(access_token=access_token))).access_token == access_token


@pytest.mark.parametrize("header", ["Wed, 21 Oct 2099 07:28:00 GMT", "86400", "999999999999"])
def test_a_retry_after_counts_for_at_most_an_hour(endpoint: TokenEndpoint, stub: StubTokenEndpoint,
                                                  header: str) -> None:
    error = fetch_error(endpoint, stub, Reply(503, "busy", headers={"Retry-After": header}), UpstreamThrottled)
    assert error.retry_after == 3600


def test_a_body_trickled_slowly_is_cut_off_at_the_deadline(stub: StubTokenEndpoint) -> None:
    stub.reset()
    stub.clients[CLIENT_ID] = CLIENT_SECRET
    endpoint = endpoint_at(stub.url, deadline_seconds=0.5)
    # 0.2 s a byte: the whole answer would take over a minute; without the deadline it would come through.
    error = fetch_error(endpoint, stub, Reply(200, answer(), drip=0.2), UpstreamUnavailable)
    assert error.status == 503


@pytest.mark.parametrize("url", ["http://auth.sangoma.com/oauth/token", "http://10.0.0.1/oauth/token",
                                 "ftp://auth.sangoma.com/oauth/token", "auth.sangoma.com/oauth/token",
                                 "https:///oauth/token", ""])
def test_a_token_url_that_is_not_https_is_refused(url: str) -> None:
    assert url_problem(url) is not None  # a container with it answers 500 (tests/integration/test_guard_whole.py)


@pytest.mark.parametrize("url", ["https://auth.sangoma.com/oauth/token", "http://127.0.0.1:8712/oauth/token",
                                 "http://localhost:8712/oauth/token", "http://[::1]:8712/oauth/token",
                                 "http://host.docker.internal:8712/oauth/token"])
def test_https_and_local_stacks_are_allowed(url: str) -> None:
    assert url_problem(url) is None


def test_a_client_that_drops_an_over_long_answer_leaves_no_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    # The function stops reading at 64 KiB and closes, which resets the connection the stub keeps open for
    # the next request: the stub must take that as the end of the connection, not print a traceback.
    stub = StubTokenEndpoint().start()
    try:
        stub.clients[CLIENT_ID] = CLIENT_SECRET
        endpoint = endpoint_at(stub.url, deadline_seconds=10)
        assert_upstream_error(fetch_error(endpoint, stub, Reply(200, answer(padding="x" * 64 * 1024))))
        assert stub.wait_for_finished_connections(1)  # whatever it prints, it has printed by then
    finally:
        stub.stop()

    assert capfd.readouterr().err == ""
