"""The local gateway refuses requests no HTTP client library would send, over raw sockets: a Host that is
not the gateway, a Content-Length it should not trust, signature headers sent twice."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from devstack.gateway import MAX_BODY_BYTES, LocalGateway

from .conftest import Lambda
from .test_client_and_gateway import KEY, PRINCIPALS, SECRET, TEMP_KEY, TEMP_SECRET, TEMP_TOKEN

TARGET = "/apps/demo/token?scope=cx.agent-calls%20cx.queue-calls"


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


@pytest.fixture
def gateway(lam: Lambda) -> Iterator[LocalGateway]:
    with LocalGateway(PRINCIPALS) as gateway:
        yield gateway


def port_of(gateway: LocalGateway) -> int:
    return int(gateway.url.rsplit(":", 1)[1])


def signed_headers(host: str, *, method: str = "GET", body: bytes = b"", key: str = KEY, secret: str = SECRET,
                   token: str | None = None) -> list[tuple[str, str]]:
    """What botocore's signer adds for a request to http://{host}{TARGET}, with Host first."""
    request = AWSRequest(method=method, url=f"http://{host}{TARGET}", data=body)
    SigV4Auth(Credentials(key, secret, token), "execute-api", "us-east-1").add_auth(request)
    return [("Host", host), *request.headers.items()]


def exchange(gateway: LocalGateway, headers: list[tuple[str, str]], body: bytes = b"", method: str = "GET",
             target: str = TARGET) -> Answer:
    """Send exactly these request bytes and read one answer (http.client parses it)."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    with socket.create_connection(("127.0.0.1", port_of(gateway)), timeout=30) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\n{head}\r\n".encode() + body)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return Answer(response.status, response.headers, response.read())


def assert_function_not_called(lam: Lambda) -> None:
    assert lam.stack.token_endpoint.request_count == 0
    assert lam.stack.moto.calls == []


# -- Host ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}"])
def test_a_request_naming_the_gateway_is_served(gateway: LocalGateway, host: str) -> None:
    answer = exchange(gateway, signed_headers(host.format(port=port_of(gateway))))

    assert answer.status == 200, answer.body
    assert b'"scope": "cx.agent-calls cx.queue-calls"' in answer.body


@pytest.mark.parametrize("host", ["vending.attacker.example:{port}", "127.0.0.1:{other}", "127.0.0.1", "localhost",
                                  "127.0.0.1.attacker.example:{port}", "gw.localhost:{port}", "[::1]:{port}"])
def test_a_request_naming_another_host_is_refused_like_api_gateway(gateway: LocalGateway, lam: Lambda,
                                                                   host: str) -> None:
    # Validly signed for the Host it names: only the Host check stands in the way.
    port = port_of(gateway)
    answer = exchange(gateway, signed_headers(host.format(port=port, other=port + 1)))

    assert answer.status == 403
    assert answer.headers["x-amzn-ErrorType"] == "ForbiddenException"
    assert answer.body == b'{"message": "Forbidden"}'
    assert_function_not_called(lam)


def test_a_request_without_host_or_with_two_is_a_bad_request(gateway: LocalGateway, lam: Lambda) -> None:
    host = f"127.0.0.1:{port_of(gateway)}"
    headers = signed_headers(host)

    missing = exchange(gateway, headers[1:])
    doubled = exchange(gateway, [("Host", host), *headers])

    for answer in (missing, doubled):
        assert answer.status == 400
        assert answer.headers["x-amzn-ErrorType"] == "BadRequestException"
    assert_function_not_called(lam)


# -- Content-Length --------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "status"), [
    ("-1", 400), ("abc", 400), ("1e3", 400), ("0x10", 400), ("+5", 400), ("5, 5", 400), ("", 400),
    (str(MAX_BODY_BYTES + 1), 413), ("9" * 5000, 413),
])
def test_an_unusable_content_length_is_refused_without_reading_a_body(gateway: LocalGateway, lam: Lambda,
                                                                      length: str, status: int) -> None:
    # No body follows: an answer at all shows the gateway did not wait for one.
    answer = exchange(gateway, [*signed_headers(f"127.0.0.1:{port_of(gateway)}"), ("Content-Length", length)])

    assert answer.status == status
    assert answer.headers["Connection"] == "close"  # what follows on this connection cannot be trusted
    assert gateway.requests == [(f"GET {TARGET}", status)]
    assert_function_not_called(lam)


@pytest.mark.parametrize("length", ["0", "0" * 5000])
def test_a_content_length_of_zero_is_a_request_without_a_body(gateway: LocalGateway, length: str) -> None:
    answer = exchange(gateway, [*signed_headers(f"127.0.0.1:{port_of(gateway)}"), ("Content-Length", length)])

    assert answer.status == 200, answer.body


def test_two_different_content_lengths_are_refused(gateway: LocalGateway, lam: Lambda) -> None:
    headers = [*signed_headers(f"127.0.0.1:{port_of(gateway)}"), ("Content-Length", "0"), ("Content-Length", "5")]

    answer = exchange(gateway, headers, body=b"hello")

    assert answer.status == 400
    assert answer.headers["Connection"] == "close"
    assert_function_not_called(lam)


def test_a_chunked_body_is_refused_rather_than_left_on_the_connection(gateway: LocalGateway, lam: Lambda) -> None:
    headers = [*signed_headers(f"127.0.0.1:{port_of(gateway)}"), ("Transfer-Encoding", "chunked")]

    answer = exchange(gateway, headers, body=b"5\r\nhello\r\n0\r\n\r\n")

    assert answer.status == 400
    assert answer.headers["Connection"] == "close"
    assert_function_not_called(lam)


def test_a_body_up_to_the_limit_is_read_and_signed(gateway: LocalGateway) -> None:
    body = b"x" * MAX_BODY_BYTES
    headers = signed_headers(f"127.0.0.1:{port_of(gateway)}", body=body)

    answer = exchange(gateway, [*headers, ("Content-Length", str(len(body)))], body=body)

    assert answer.status == 200, answer.body


# -- signature headers sent twice ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Authorization", "X-Amz-Date"])
def test_a_signature_header_sent_twice_is_refused(gateway: LocalGateway, lam: Lambda, name: str) -> None:
    headers = signed_headers(f"127.0.0.1:{port_of(gateway)}")
    # The same value again: each copy alone would verify.
    value = next(value for header, value in headers if header == name)

    answer = exchange(gateway, [*headers, (name, value)])

    assert answer.status == 403
    assert answer.headers["x-amzn-ErrorType"] == "IncompleteSignatureException"
    assert f"{name} header".encode() in answer.body
    assert_function_not_called(lam)


def test_a_second_authorization_for_another_key_is_refused(gateway: LocalGateway, lam: Lambda) -> None:
    host = f"127.0.0.1:{port_of(gateway)}"
    mine = signed_headers(host)
    theirs = next(value for header, value in signed_headers(host, key="AKIAUNKNOWNKEY000001") if header ==
                  "Authorization")

    answer = exchange(gateway, [*mine, ("Authorization", theirs)])

    assert answer.status == 403
    assert answer.headers["x-amzn-ErrorType"] == "IncompleteSignatureException"
    assert_function_not_called(lam)


def test_a_session_token_sent_twice_is_refused(gateway: LocalGateway, lam: Lambda) -> None:
    headers = signed_headers(f"127.0.0.1:{port_of(gateway)}", key=TEMP_KEY, secret=TEMP_SECRET, token=TEMP_TOKEN)
    assert exchange(gateway, headers).status == 200, "the request alone is accepted"

    answer = exchange(gateway, [*headers, ("X-Amz-Security-Token", TEMP_TOKEN)])

    assert answer.status == 403
    assert answer.headers["x-amzn-ErrorType"] == "IncompleteSignatureException"

