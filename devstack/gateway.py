"""A stand-in for the deployed API Gateway (REST API, AWS_IAM auth) on 127.0.0.1.

It checks each request's SigV4 signature (service execute-api) against a local
file of access keys, each mapped to the IAM principal it stands for, builds the
REST proxy event (the shape of events/vend.json) with that principal as
`requestContext.identity.userArn`, and calls the real handler in-process.
Refusals look like API Gateway's: 403, `{"message": ...}` and `x-amzn-ErrorType`.

Before any of that it refuses what a proxy in front of the function must not pass
on: a Content-Length that is not one plain number (400) or is over MAX_BODY_BYTES
(413), or a chunked body (400), without reading the body and closing the
connection; a Host that is not this gateway (403 ForbiddenException, as API
Gateway answers a host it does not serve), no Host or two (400); and signature
headers sent twice (403 IncompleteSignatureException), since which copy counts
would be anyone's guess.

Signatures are recomputed with botocore's SigV4Auth, the signer every AWS SDK
call uses; only reading the Authorization header is done here.

Not covered: presigned (query-string) signatures, unsigned payload, stage variables.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

from .lambda_context import LocalLambdaContext
from .local_aws import ACCOUNT, REGION

ROOT = Path(__file__).resolve().parent.parent
DEMO_CREDENTIALS = Path(__file__).resolve().parent / "local-credentials.json"
SERVICE = "execute-api"
STAGE = "v1"
MAX_SKEW = timedelta(minutes=5)  # API Gateway refuses signatures more than 5 minutes off
AMZ_DATE = "%Y%m%dT%H%M%SZ"
# The one resource the API has; the stage prefix is optional so the deployed URL's path works too.
ROUTE = re.compile(rf"^(?:/{STAGE})?/apps/(?P<app>[^/]+)/token$")
METHODS = frozenset({"GET", "DELETE"})
MAX_BODY_BYTES = 1024 * 1024  # the API takes no body at all; API Gateway's own limit is 10 MB
# What a signature is read from: each must come once.
SIGNATURE_HEADERS = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-SHA256")
DIGITS = re.compile(r"[0-9]+")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass(frozen=True)
class Principal:
    """One access key of the local file and the IAM principal it authenticates as."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    principal_arn: str
    session_token: str | None = field(default=None, repr=False)

    @property
    def account_id(self) -> str:
        return self.principal_arn.split(":")[4]


def load_credentials(path: Path = DEMO_CREDENTIALS) -> dict[str, Principal]:
    """{access key id: {"secret_access_key", "principal_arn"[, "session_token"]}}; keys starting with _ are notes."""
    raw = json.loads(path.read_text())
    return {key: Principal(key, entry["secret_access_key"], entry["principal_arn"], entry.get("session_token"))
            for key, entry in raw.items() if not key.startswith("_")}


class Refused(Exception):
    """A request API Gateway would refuse before calling the function."""

    def __init__(self, error_type: str | None, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.error_type, self.message, self.status = error_type, message, status

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json"}
        if self.error_type:
            headers["x-amzn-ErrorType"] = self.error_type
        return self.status, headers, json.dumps({"message": self.message}).encode()


def missing_token() -> Refused:
    # API Gateway's answer to an unsigned request, and to a resource or method it does not have.
    return Refused("MissingAuthenticationTokenException", "Missing Authentication Token")


def bad_request() -> Refused:
    return Refused("BadRequestException", "Bad Request", 400)


def body_length(headers: Message) -> int:
    """The body's length, from a Content-Length that is one plain number up to MAX_BODY_BYTES. Checked before
    reading a byte, so a negative, garbled or huge length never makes the gateway wait or allocate."""
    if headers.get_all("Transfer-Encoding"):
        raise bad_request()  # http.server does not decode chunked bodies, and this API takes none
    values = [value.strip() for value in headers.get_all("Content-Length") or []]
    if not values:
        return 0
    if len(values) > 1 or not DIGITS.fullmatch(values[0]):
        raise bad_request()
    digits = values[0].lstrip("0") or "0"
    # The digit count first: int() refuses strings of thousands of digits.
    if len(digits) > len(str(MAX_BODY_BYTES)) or int(digits) > MAX_BODY_BYTES:
        # After API Gateway's REQUEST_TOO_LARGE gateway response (413); its exact body is not documented.
        raise Refused(None, "Request Too Large", 413)
    return int(digits)


BAD_SIGNATURE = ("The request signature we calculated does not match the signature you provided. Check your AWS "
                 "Secret Access Key and signing method. Consult the service documentation for details.")


class _SignedHeadersOnly(SigV4Auth):
    """botocore's signer, told which headers the caller signed (it otherwise picks them itself)."""

    def __init__(self, credentials: Credentials, region: str, signed_headers: list[str]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = signed_headers

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        headers = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or []:
                headers[name] = value
        return headers


@dataclass(frozen=True)
class _Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str


def _parse_authorization(value: str) -> _Authorization:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        raise Refused("IncompleteSignatureException", f"Unsupported Authorization Type: {algorithm[:40]}")
    parts = dict(part.strip().partition("=")[::2] for part in rest.split(",") if "=" in part)
    missing = [name for name in ("Credential", "Signature", "SignedHeaders") if not parts.get(name)]
    if missing:
        raise Refused("IncompleteSignatureException",
                      " ".join(f"Authorization header requires '{name}' parameter." for name in missing))
    scope = parts["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise Refused("IncompleteSignatureException",
                      "Credential should be of the form AKID/yyyyMMdd/region/service/aws4_request.")
    return _Authorization(scope[0], scope[1], scope[2], scope[3], parts["SignedHeaders"].lower().split(";"),
                          parts["Signature"])


class SigV4Verifier:
    """Decides whether a request is signed by a known key, the way API Gateway's AWS_IAM auth does."""

    def __init__(self, principals: Mapping[str, Principal], region: str = REGION,
                 clock: Callable[[], float] = time.time) -> None:
        self.principals = dict(principals)
        self.region = region
        self.clock = clock

    def verify(self, method: str, path: str, query: str, headers: Message, body: bytes) -> Principal:
        for name in SIGNATURE_HEADERS:
            if len(headers.get_all(name) or []) > 1:
                raise Refused("IncompleteSignatureException", f"The {name} header must be sent only once.")
        authorization = headers.get("Authorization")
        if not authorization:
            raise missing_token()
        auth = _parse_authorization(authorization)
        amz_date = headers.get("X-Amz-Date")
        if not amz_date:
            raise Refused("IncompleteSignatureException",
                          "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
        try:
            signed_at = datetime.strptime(amz_date, AMZ_DATE).replace(tzinfo=UTC)
        except ValueError:
            raise Refused("IncompleteSignatureException", f"Invalid X-Amz-Date: {amz_date[:40]}") from None
        if auth.service != SERVICE:
            raise Refused("InvalidSignatureException", f"Credential should be scoped to correct service: '{SERVICE}'.")
        if auth.region != self.region:
            raise Refused("InvalidSignatureException",
                          f"Credential should be scoped to a valid region, not '{auth.region[:40]}'. "
                          f"This gateway expects '{self.region}'.")
        if auth.date != amz_date[:8]:
            raise Refused("InvalidSignatureException",
                          "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.")
        principal = self.principals.get(auth.access_key_id)
        sent_token = headers.get("X-Amz-Security-Token")
        if principal is None or (sent_token or None) != principal.session_token:
            raise Refused("UnrecognizedClientException", "The security token included in the request is invalid.")
        self._check_clock(signed_at, amz_date)
        if "host" not in auth.signed_headers or any(name not in headers for name in auth.signed_headers):
            raise Refused("InvalidSignatureException", BAD_SIGNATURE)
        content_sha256 = headers.get("X-Amz-Content-SHA256")
        if content_sha256 and content_sha256 != hashlib.sha256(body).hexdigest():
            raise Refused("InvalidSignatureException", BAD_SIGNATURE)
        expected = self._signature(principal, auth, method, path, query, headers, body, amz_date)
        if not hmac.compare_digest(expected, auth.signature):
            raise Refused("InvalidSignatureException", BAD_SIGNATURE)
        return principal

    def _check_clock(self, signed_at: datetime, amz_date: str) -> None:
        now = datetime.fromtimestamp(self.clock(), UTC).replace(microsecond=0)
        if signed_at < now - MAX_SKEW:
            raise Refused("InvalidSignatureException", f"Signature expired: {amz_date} is now earlier than "
                                                       f"{(now - MAX_SKEW):{AMZ_DATE}} ({now:{AMZ_DATE}} - 5 min.)")
        if signed_at > now + MAX_SKEW:
            raise Refused("InvalidSignatureException", f"Signature not yet current: {amz_date} is still later than "
                                                       f"{(now + MAX_SKEW):{AMZ_DATE}} ({now:{AMZ_DATE}} + 5 min.)")

    def _signature(self, principal: Principal, auth: _Authorization, method: str, path: str, query: str,
                   headers: Message, body: bytes, amz_date: str) -> str:
        # Rebuild the request as the caller signed it and let botocore compute the signature.
        # The query is decoded and handed over as params, so botocore re-encodes and sorts it: the
        # canonical form AWS defines, which is what botocore and curl --aws-sigv4 send.
        params = query_pairs(query)
        request = AWSRequest(method=method, url=f"http://{headers.get('Host', '')}{path}", data=body, params=params)
        for name in auth.signed_headers:
            for value in headers.get_all(name) or []:
                request.headers[name] = value
        request.context["timestamp"] = amz_date
        credentials = Credentials(principal.access_key_id, principal.secret_access_key, principal.session_token)
        signer = _SignedHeadersOnly(credentials, auth.region, auth.signed_headers)
        canonical_request = signer.canonical_request(request)
        return str(signer.signature(signer.string_to_sign(request, canonical_request), request))


def query_pairs(query: str) -> list[tuple[str, str]]:
    """The query's (name, value) pairs, decoded as API Gateway decodes them, for the signature and for the event
    alike: form encoding, so `+` is a space (what requests `params=`, botocore `AWSRequest(params=)`, curl
    --url-query and URLSearchParams send) and `%2B` a plus."""
    return [(unquote_plus(key), unquote_plus(value))
            for key, _, value in (pair.partition("=") for pair in query.split("&") if pair)]


def real_handler() -> Handler:
    """The function's own entry point, imported from functions/ as the Lambda runtime would."""
    functions = str(ROOT / "functions")
    if functions not in sys.path:
        sys.path.insert(0, functions)
    from token_vending.app import lambda_handler

    return lambda_handler  # type: ignore[no-any-return]


def build_event(method: str, path: str, query: str, headers: Message, body: bytes, principal: Principal,
                app: str, api_id: str = "local") -> dict[str, Any]:
    """The REST (payload 1.0) proxy event API Gateway sends for an IAM-authenticated request."""
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers.items():
        multi_headers.setdefault(name, []).append(value)
    multi_query: dict[str, list[str]] = {}
    for key, value in query_pairs(query):
        multi_query.setdefault(key, []).append(value)
    now = time.time()
    request_id = str(uuid.uuid4())
    resource_path = "/apps/{app}/token"
    stage_path = path if path.startswith(f"/{STAGE}/") else f"/{STAGE}{path}"
    return {
        "resource": resource_path,
        "path": stage_path.removeprefix(f"/{STAGE}"),
        "httpMethod": method,
        "headers": {name: values[-1] for name, values in multi_headers.items()} or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"app": app},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": resource_path,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": stage_path,
            "accountId": ACCOUNT,
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": api_id,
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {
                "accessKey": principal.access_key_id,
                "accountId": principal.account_id,
                "caller": principal.access_key_id,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": "127.0.0.1",
                "user": principal.access_key_id,
                "userAgent": headers.get("User-Agent"),
                "userArn": principal.principal_arn,
            },
            "domainName": headers.get("Host"),
            "apiId": api_id,
        },
        "body": base64.b64encode(body).decode() if body else None,
        "isBase64Encoded": bool(body),
    }


class LocalGateway:
    """`with LocalGateway(load_credentials()) as gateway:` then sign requests for gateway.url."""

    def __init__(self, principals: Mapping[str, Principal], *, handler: Handler | None = None, port: int = 0,
                 region: str = REGION, quiet: bool = True, clock: Callable[[], float] = time.time) -> None:
        self.verifier = SigV4Verifier(principals, region, clock)
        self.region = region
        self.quiet = quiet
        self.requests: list[tuple[str, int]] = []  # (request line, status): what reached the gateway
        self._handler = handler
        # A Lambda container runs one invocation at a time; so does this one.
        self._invoke_lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._request_handler())
        self._server.daemon_threads = True
        # The Host values that name this gateway; API Gateway, too, serves only the hosts it knows.
        bound = self._server.server_address[1]
        self.hosts = frozenset({f"127.0.0.1:{bound}", f"localhost:{bound}"})
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="local-gateway",
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> LocalGateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalGateway:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def handle(self, method: str, target: str, headers: Message, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """One request through the gateway: route, authenticate, invoke. Returns (status, headers, body)."""
        path, _, query = target.partition("?")
        try:
            self._check_host(headers)
            route = ROUTE.match(path)
            if route is None or method not in METHODS:
                raise missing_token()
            principal = self.verifier.verify(method, path, query, headers, body)
        except Refused as refused:
            return refused.answer()
        event = build_event(method, path, query, headers, body, principal, route.group("app"))
        with self._invoke_lock:
            handler = self._handler or real_handler()
            result = handler(event, LocalLambdaContext())
        answer_headers = {name: str(value) for name, value in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            answer_headers[name] = ", ".join(str(value) for value in values)
        answer_headers["x-amzn-RequestId"] = event["requestContext"]["requestId"]
        raw = result.get("body") or ""
        payload = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
        return int(result["statusCode"]), answer_headers, payload

    def _check_host(self, headers: Message) -> None:
        hosts = headers.get_all("Host") or []
        if len(hosts) != 1:
            raise bad_request()  # RFC 9112 §3.2: a request carries exactly one Host
        if hosts[0].strip().lower() not in self.hosts:
            raise Refused("ForbiddenException", "Forbidden")

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle(self) -> None:
                try:
                    super().handle()
                except ConnectionError:  # the client hung up (a reset): that ends the connection, not the server
                    self.close_connection = True

            def _serve(self) -> None:
                try:
                    length = body_length(self.headers)
                except Refused as refused:
                    # The body was not read, so the rest of this connection cannot be parsed: close it.
                    status, headers, payload = refused.answer()
                    self._answer(status, {**headers, "Connection": "close"}, payload)
                    return
                body = self.rfile.read(length) if length else b""
                try:
                    status, headers, payload = gateway.handle(self.command, self.path, self.headers, body)
                except Exception as error:  # API Gateway answers 502 when the integration fails
                    print(f"local gateway: handler failed: {type(error).__name__}", file=sys.stderr)
                    status = 502
                    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": "InternalServerErrorException"}
                    payload = json.dumps({"message": "Internal server error"}).encode()
                self._answer(status, headers, payload)

            def _answer(self, status: int, headers: Mapping[str, str], payload: bytes) -> None:
                gateway.requests.append((f"{self.command} {self.path}", status))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)  # "Connection: close" also closes it after this answer
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_DELETE = do_POST = do_PUT = do_PATCH = do_HEAD = do_OPTIONS = _serve  # noqa: N815

            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                # The request line holds app, scope and fingerprint only; headers (signatures) are never logged.
                if not gateway.quiet:
                    sys.stderr.write(f"gateway: {self.command} {self.path} -> {code}\n")

            def log_message(self, format: str, *args: Any) -> None:
                if not gateway.quiet:
                    super().log_message(format, *args)

        return RequestHandler


def quote_query_value(value: str) -> str:
    """How a query value must be written in a URL so that any SigV4 signer agrees with API Gateway."""
    return quote(value, safe="-_.~")
