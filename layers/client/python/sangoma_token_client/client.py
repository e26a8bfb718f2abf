"""Calling the vending service: SigV4 signing, a memory cache, bounded retries.

botocore signs (the same code every AWS SDK call uses) and urllib3 carries the
request: both come with botocore, so the client adds no dependency to a Lambda
function or a container that already has boto3.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import botocore.session
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from .errors import TokenVendingError

SERVICE = "execute-api"
# {api-id}.execute-api.{region}.amazonaws.com(.cn): the region is in the URL.
EXECUTE_API_HOST = re.compile(r"^https?://[^/.]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?(?:[:/]|$)")
# What SigV4 leaves unencoded (RFC 3986 unreserved): the canonical query uses exactly this.
UNRESERVED = "-_.~"
# The local gateway (`make serve`) accepts the region its state file names, else this one.
LOCAL_REGION = "us-east-1"
# Where a running `make serve` says where it listens and for which region (the repository's devstack writes it;
# read here as plain JSON, since this package never imports the repository's own code).
LOCAL_STACK_FILE_VARIABLE = "SANGOMA_LOCAL_STACK_FILE"
LOCAL_STACK_FILE = ".local-stack.json"  # in the repository root, where make serve and its commands run
RETRYABLE_STATUSES = frozenset({429, 503})
# The service's refusal of a report about a token minted moments ago (429 with Retry-After): waiting and
# reporting again would drop a token the CX API refused for another reason (a scope): the caller decides.
TOO_EARLY = "slow_down"
# Connection failures that happen before the service saw the request: safe to retry.
RETRYABLE_ERRORS = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError,
                    urllib3.exceptions.ProtocolError)


def fingerprint(access_token: str) -> str:
    """The token's public name: the first 16 hex characters of its SHA-256, as the service computes it."""
    return hashlib.sha256(access_token.encode()).hexdigest()[:16]


def normalize_scopes(scopes: str | Iterable[str]) -> tuple[str, ...]:
    """`"b a"`, `["a", "b"]` and `"a b a"` are one scope set (the service treats them so too)."""
    values = [scopes] if isinstance(scopes, str) else list(scopes)
    return tuple(sorted({token for value in values for token in value.split(" ") if token}))


DROPPED_HEADER = "Token-Dropped"  # a report's answer: "true" if the service dropped the token, else "false"


@dataclass(frozen=True)
class Token:
    """The service's answer: `token.access_token`, or `token["access_token"]` like the JSON answer.

    `access_token` stays out of repr() and str() so logging a Token does not leak it.
    """

    access_token: str = field(repr=False)
    token_type: str
    scope: str
    expires_in: int  # seconds left when the service answered
    expires_at: str  # RFC 3339, UTC
    fingerprint: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __getitem__(self, name: str) -> Any:
        """The answer's fields by name, as in the JSON; KeyError for any other name."""
        if name not in _TOKEN_FIELDS:
            raise KeyError(name)
        return getattr(self, name)

    def __contains__(self, name: object) -> bool:
        return name in _TOKEN_FIELDS

    # __getitem__ alone would make a Token iterable by index (token[0], token[1], ...: KeyError).
    __iter__ = None


_TOKEN_FIELDS = frozenset(f.name for f in fields(Token))


@dataclass
class _Cached:
    token: Token
    refresh_at: float  # time.monotonic() deadline


class TokenClient:
    """A client for one vending service URL (the stack's `VendingUrl`, e.g. https://id.execute-api.REGION.amazonaws.com/v1).

    Thread-safe; keep one per process and share it. Each (app, scope set) token
    is kept in memory until `margin_seconds` before it expires: before the sooner
    of the answer's `expires_in` and `expires_at`.
    """

    def __init__(
        self,
        url: str,
        *,
        region: str | None = None,
        session: botocore.session.Session | None = None,
        margin_seconds: float = 300.0,
        max_attempts: int = 3,
        max_retry_wait_seconds: float = 10.0,
        timeout: urllib3.Timeout | None = None,
        http: urllib3.PoolManager | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        _require_safe_url(url)
        self.url = url.rstrip("/")
        self._session = session or botocore.session.Session()
        self.region = region or _resolve_region(self.url, self._session)
        self.margin_seconds = margin_seconds
        self.max_attempts = max(1, max_attempts)
        self.max_retry_wait_seconds = max_retry_wait_seconds
        # API Gateway gives up on an integration after 29 s: wait a little longer to see its answer.
        self.timeout = timeout or urllib3.Timeout(connect=3.0, read=31.0)
        self._http = http or urllib3.PoolManager(maxsize=4)
        self._sleep = sleep
        self._cache: dict[tuple[str, tuple[str, ...]], _Cached] = {}
        self._lock = threading.Lock()

    # -- the two calls ------------------------------------------------------------------------

    def get_token(self, app: str, scopes: str | Iterable[str]) -> Token:
        """A token for `app` with exactly `scopes` (a space-separated string or a list)."""
        key = (app, normalize_scopes(scopes))
        with self._lock:
            cached = self._cache.get(key)
            if cached and time.monotonic() < cached.refresh_at:
                return cached.token
        scope = " ".join(key[1])
        response = self._call("GET", app, [("scope", scope)])
        token, seconds_left = _token_from(response, scope)
        with self._lock:
            # A token already inside the margin is handed out but not kept: the next call asks again.
            if seconds_left > self.margin_seconds:
                self._cache[key] = _Cached(token, time.monotonic() + seconds_left - self.margin_seconds)
            else:
                self._cache.pop(key, None)
        return token

    def report_rejected(self, app: str, scopes: str | Iterable[str], token: Token | str) -> bool | None:
        """Tell the service a CX API rejected `token`, and forget it here: the next get_token fetches again.
        True: the service dropped it; False: it was not the token it hands out any more (replaced already);
        None: the service did not say."""
        access_token = token.access_token if isinstance(token, Token) else token
        return self.report_rejected_fingerprint(app, scopes, fingerprint(access_token))

    def report_rejected_fingerprint(self, app: str, scopes: str | Iterable[str],
                                    token_fingerprint: str) -> bool | None:
        """report_rejected for callers that hold only the fingerprint (the command line)."""
        key = (app, normalize_scopes(scopes))
        with self._lock:
            cached = self._cache.get(key)
            if cached and cached.token.fingerprint == token_fingerprint:
                del self._cache[key]
        answer = self._call("DELETE", app, [("fingerprint", token_fingerprint), ("scope", " ".join(key[1]))])
        dropped = answer.headers.get(DROPPED_HEADER)
        return None if dropped is None else dropped == "true"

    def forget(self) -> None:
        """Drop every cached token."""
        with self._lock:
            self._cache.clear()

    # -- HTTP ---------------------------------------------------------------------------------

    def _call(self, method: str, app: str, params: list[tuple[str, str]]) -> urllib3.BaseHTTPResponse:
        """Send a signed request; retry 429/503 (honouring Retry-After) and connection failures, boundedly."""
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts
            try:
                response = self._send(method, app, params)
            except RETRYABLE_ERRORS as exc:
                if last:
                    raise TokenVendingError("unavailable", f"the vending service could not be reached "
                                                           f"({type(exc).__name__})") from None
                self._sleep(self._backoff(attempt))
                continue
            except urllib3.exceptions.HTTPError as exc:  # read timeouts and the like: the service may be busy
                raise TokenVendingError("unavailable", f"the vending service did not answer "
                                                       f"({type(exc).__name__})") from None
            if 200 <= response.status < 300:
                return response
            error = _error_from(response)
            if response.status not in RETRYABLE_STATUSES or error.error == TOO_EARLY or last:
                raise error
            wait = self._backoff(attempt) if error.retry_after is None else error.retry_after
            if wait > self.max_retry_wait_seconds:
                raise error  # the service asked for longer than we are willing to wait: the caller decides
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _send(self, method: str, app: str, params: list[tuple[str, str]]) -> urllib3.BaseHTTPResponse:
        # The query goes out already in SigV4's canonical form (encoded, sorted), so what botocore
        # signs is byte for byte what API Gateway rebuilds from the request.
        query = "&".join(f"{k}={v}" for k, v in sorted((quote(k, safe=UNRESERVED), quote(v, safe=UNRESERVED))
                                                        for k, v in params))
        url = f"{self.url}/apps/{quote(app, safe='')}/token?{query}"
        request = AWSRequest(method=method, url=url, headers={"Accept": "application/json"})
        SigV4Auth(self._credentials(), SERVICE, self._require_region()).add_auth(request)
        return self._http.request(method, url, headers=dict(request.headers.items()), timeout=self.timeout,
                                  retries=False, redirect=False)

    def _credentials(self) -> Any:
        credentials = self._session.get_credentials()  # botocore's default chain; refreshes temporary ones
        if credentials is None:
            raise TokenVendingError("no_credentials", "no AWS credentials found (botocore's default chain)")
        return credentials.get_frozen_credentials()

    def _require_region(self) -> str:
        if not self.region:
            raise TokenVendingError("no_region", "no signing region for this URL: pass region= (--region on the "
                                                 "command line), or set AWS_REGION or AWS_DEFAULT_REGION")
        return str(self.region)

    def _backoff(self, attempt: int) -> float:
        return float(min(0.5 * 2 ** (attempt - 1), self.max_retry_wait_seconds))


def _token_from(response: urllib3.BaseHTTPResponse, asked_scope: str) -> tuple[Token, float]:
    """The token in a vend answer and the seconds it may be kept from now: the sooner of its `expires_in` and its
    `expires_at`. The answer must be for exactly the (normalized) scope asked for."""
    try:
        body = json.loads(response.data)
        scope, expires_at = body["scope"], body["expires_at"]
        if not isinstance(scope, str) or not isinstance(expires_at, str):
            raise TypeError
        token = Token(access_token=str(body["access_token"]), token_type=str(body.get("token_type", "bearer")),
                      scope=scope, expires_in=int(body["expires_in"]), expires_at=expires_at,
                      fingerprint=fingerprint(str(body["access_token"])))
        ends = datetime.fromisoformat(expires_at)
        if ends.tzinfo is None:  # RFC 3339 always names the offset; without one the instant is unknown
            raise ValueError
    except (ValueError, KeyError, TypeError):
        # Never quote the body: it may hold a token.
        raise TokenVendingError("invalid_response", "the vending service answered something unusable",
                                status=response.status) from None
    if token.scope != asked_scope:
        raise TokenVendingError("invalid_response", "the vending service answered for another scope than asked "
                                                    f"({asked_scope!r})", status=response.status)
    return token, min(float(token.expires_in), ends.timestamp() - time.time())


def _resolve_region(url: str, session: botocore.session.Session) -> str | None:
    """The signing region when none is passed: an execute-api URL names it; a plain http loopback URL is the
    local gateway, which accepts its local stack's region whatever the shell is set up for; else AWS_REGION
    (which botocore's configuration ignores), else AWS_DEFAULT_REGION or the profile's region. None when
    nothing says. Only plain http reads the local stack's file: an https URL, even to this machine, is not
    `make serve`'s gateway (a tunnel or proxy to a deployed API), and signs for the configured region."""
    match = EXECUTE_API_HOST.match(url)
    if match:
        return match.group(1)
    if _is_local_gateway(url):
        return _local_stack_region()
    configured = os.environ.get("AWS_REGION") or session.get_config_variable("region")
    return str(configured) if configured else None


def _local_stack_region() -> str:
    """The region of the running `make serve` (its state file), else the one it runs in by default."""
    path = os.environ.get(LOCAL_STACK_FILE_VARIABLE) or LOCAL_STACK_FILE
    try:
        with open(path, encoding="utf-8") as file:
            region = json.load(file).get("region")
    except (OSError, ValueError, AttributeError):
        return LOCAL_REGION
    return region if isinstance(region, str) and region else LOCAL_REGION


def _require_safe_url(url: str) -> None:
    """https anywhere; plain http only to this machine, so signed requests and tokens never cross a network
    in clear."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed [IPv6 literal
        host = None
    if not host or parts.scheme not in ("https", "http"):
        raise TokenVendingError("invalid_url", "the vending service URL must be https://HOST/... (the stack's "
                                               "VendingUrl)")
    if parts.scheme == "http" and not _is_loopback(url):
        raise TokenVendingError("insecure_url", "plain http is only for a loopback address (localhost, "
                                                "127.0.0.0/8, ::1); use the service's https:// URL")


def _is_local_gateway(url: str) -> bool:
    """Where `make serve`'s gateway listens: plain http on a loopback address."""
    return urlsplit(url).scheme == "http" and _is_loopback(url)


def _is_loopback(url: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1. Not *.localhost: the resolver, not this machine, decides where that goes."""
    host = (urlsplit(url).hostname or "").rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error_from(response: urllib3.BaseHTTPResponse) -> TokenVendingError:
    """Map an error answer to an exception: the service's {error, error_description}, or API Gateway's {message}."""
    retry_after = _retry_after(response.headers.get("Retry-After"))
    try:
        body = json.loads(response.data or b"{}")
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return TokenVendingError(body["error"], str(body.get("error_description", "")), status=response.status,
                                 retry_after=retry_after)
    # API Gateway's own refusals (signature, throttling) carry {"message"} and the type in a header.
    error_type = (response.headers.get("x-amzn-ErrorType") or "").split(":")[0]
    message = body.get("message") if isinstance(body, dict) else None
    return TokenVendingError(error_type or f"http_{response.status}",
                             str(message or response.reason or f"HTTP {response.status}"),
                             status=response.status, retry_after=retry_after)


def _retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
