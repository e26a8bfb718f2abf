"""Sangoma's OAuth2 token endpoint: one client_credentials request, retried by urllib3.

Returns an IssuedToken or raises UpstreamError / CredentialsRejected /
UpstreamUnavailable / UpstreamThrottled. Nothing from the response body reaches
an error text or a log line.

The endpoint is trusted to be Sangoma's, but a misconfiguration or a hostile
proxy must not hurt the service, so every answer is bounded: redirects are not
followed (502), the body is read up to MAX_BODY_BYTES, the whole fetch
(retries included) has one deadline, a Retry-After counts for at most an hour,
and the token must be a bearer token as RFC 6750 defines it. The URL must be
https, except to a loopback host or host.docker.internal (local stacks): the
container checks it with the other settings when it starts (settings.py).

`requests` is imported on the first fetch, not at init: most cold starts are
answered from the table and never call the endpoint.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from urllib3.exceptions import ConnectTimeoutError, InvalidHeader, MaxRetryError, ReadTimeoutError
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util.retry import Retry

from .clock import SYSTEM_CLOCK, Clock
from .errors import CredentialsRejected, UpstreamError, UpstreamThrottled, UpstreamUnavailable
from .observability import logger, record_upstream, tracer
from .settings import Settings

if TYPE_CHECKING:
    import requests

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_RETRY_AFTER = 5  # seconds, told to callers when the endpoint did not say
MAX_RETRY_AFTER = 3600  # a Retry-After further out than this counts as an hour
MAX_BODY_BYTES = 64 * 1024
MAX_TOKEN_BYTES = 4096  # what KMS can seal in one Encrypt
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 §2.1


# RFC 6749 §5.2's error codes: the only text of a refusal that is passed on (in the 502's description).
REGISTERED_ERRORS = frozenset({"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                               "unsupported_grant_type", "invalid_scope"})


@dataclass(frozen=True)
class IssuedToken:
    access_token: str = field(repr=False)
    token_type: str
    expires_in: int
    default_lifetime: bool = False  # the answer had no expires_in: DEFAULT_TOKEN_LIFETIME_SECONDS was assumed


class _FetchRetry(Retry):
    """urllib3's Retry within the fetch's deadline: no attempt starts that could not finish before it.

    Also: urllib3 caps a long Retry-After and sleeps anyway; within a 29 s API call we would rather
    stop retrying and pass the wait on to the caller."""

    retry_after_budget = 2.0  # seconds we are willing to sleep for one Retry-After

    def __init__(self, *args: Any, deadline: float = math.inf, attempt_seconds: float = 0.0,
                 clock: Clock = SYSTEM_CLOCK, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline  # on clock.monotonic()
        self.attempt_seconds = attempt_seconds  # the longest one attempt may take (connect + read timeouts)
        self.clock = clock

    def new(self, **options: Any) -> Self:
        return super().new(deadline=self.deadline, attempt_seconds=self.attempt_seconds, clock=self.clock, **options)

    def sleep(self, response: Any = None) -> None:
        # urllib3's own waits the same (the Retry-After, else the back-off), but calls time.sleep itself:
        # this waits on the function's clock, which tests move instead of waiting.
        wait = self.get_retry_after(response) if self.respect_retry_after_header and response is not None else None
        wait = wait or self.get_backoff_time()
        if wait > 0:
            self.clock.sleep(wait)

    def increment(self, method: str | None = None, url: str | None = None,  # the signature of urllib3's Retry
                  response: Any = None, error: Exception | None = None, _pool: Any = None,
                  _stacktrace: Any = None) -> Self:
        asked = _retry_after(response.headers.get("Retry-After")) if response is not None else None
        if asked is not None and asked > self.retry_after_budget:
            raise MaxRetryError(_pool, url or "", error)
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        wait = retry.get_retry_after(response) if response is not None else None
        if self.clock.monotonic() + (wait or retry.get_backoff_time()) + self.attempt_seconds > self.deadline:
            raise MaxRetryError(_pool, url or "", error)
        return retry

    def get_retry_after(self, response: Any) -> float | None:
        try:
            return super().get_retry_after(response)
        except InvalidHeader:  # urllib3 gives up on a junk Retry-After; back off as if it were absent
            return None


class TokenEndpoint:
    """TOKEN_URL, asked as the settings say: timeouts, retries, one deadline, lifetimes it trusts."""

    def __init__(self, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self._settings = settings
        self._clock = clock
        self._url = settings.token_url

    @tracer.capture_method(capture_response=False)
    def fetch(self, client_id: str, client_secret: str, scopes: tuple[str, ...]) -> IssuedToken:
        import requests  # here, not at import: see the module docstring

        started = time.perf_counter()
        deadline = self._clock.monotonic() + self._settings.token_fetch_deadline_seconds
        try:
            with self._session(requests, deadline) as session:
                response = session.post(
                    self._url,
                    data={"grant_type": "client_credentials", "scope": " ".join(scopes)},
                    # Basic credentials as Sangoma documents them (curl --basic --user id:secret): raw, not
                    # form-encoded first as RFC 6749 §2.3.1 has it; `make apps validate` warns where it matters.
                    auth=(client_id, client_secret),
                    headers={"Accept": "application/json", "Accept-Encoding": "identity"},
                    timeout=(self._settings.token_connect_timeout_seconds, self._settings.token_read_timeout_seconds),
                    allow_redirects=False,
                    stream=True,
                )
                with response:
                    body = _read_body(response, deadline, self._settings.token_read_timeout_seconds, self._clock)
        except _BodyTooLarge:
            self._failed("too_large", started)
            raise UpstreamError("the token endpoint's answer is too large") from None
        except (requests.RequestException, Urllib3Error, OSError) as error:
            kind = _failure_kind(error)
            self._failed(kind, started)
            raise UpstreamUnavailable(retry_after=DEFAULT_RETRY_AFTER) from None
        return self._answer(response, body, scopes, started)

    def _session(self, requests: Any, deadline: float) -> Any:
        # A session per fetch: the Retry carries this fetch's deadline. Fetches are rare (a token lives
        # about a year), so the connection pool a shared session would keep buys nothing.
        retry = _FetchRetry(
            total=self._settings.token_max_retries,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"POST"}),  # the grant is safe to repeat
            redirect=False,
            backoff_factor=0.3,
            backoff_jitter=0.3,
            backoff_max=2.0,
            respect_retry_after_header=True,
            raise_on_status=False,  # hand the last answer back so we can map it
            deadline=deadline,
            clock=self._clock,
            attempt_seconds=self._settings.token_connect_timeout_seconds + self._settings.token_read_timeout_seconds,
        )
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(max_retries=retry)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def _failed(self, kind: str, started: float, **details: Any) -> None:
        record_upstream(kind, _ms_since(started))
        logger.warning("token endpoint request failed", extra={"upstream_failure": kind, **details})

    def _answer(self, response: requests.Response, body: bytes, scopes: tuple[str, ...],
                started: float) -> IssuedToken:
        status = response.status_code
        if status in RETRY_STATUSES:
            asked = _retry_after(response.headers.get("Retry-After"))
            self._failed(f"http_{status}", started, status=status, retry_after=asked)
            if asked is not None:
                raise UpstreamThrottled(retry_after=asked)
            raise UpstreamUnavailable(retry_after=DEFAULT_RETRY_AFTER)
        if 300 <= status < 400:
            self._failed("redirect", started, status=status)
            raise UpstreamError(f"the token endpoint answered with a redirect ({status}), which is not followed")
        if status != 200:
            error_code = _error_code(body)
            self._failed(f"http_{status}", started, status=status, error=error_code)
            if status == 401 or error_code == "invalid_client":
                raise CredentialsRejected()
            named = f" {error_code}" if error_code in REGISTERED_ERRORS else ""
            raise UpstreamError(f"the token endpoint refused the request ({status}{named})")
        try:
            token = self._parse(body, scopes)
        except UpstreamError as error:
            self._failed("unusable", started, problem=error.description)
            raise
        record_upstream("ok", _ms_since(started))
        return token

    def _parse(self, body: bytes, requested: tuple[str, ...]) -> IssuedToken:
        try:
            answer = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: deeply nested arrays or objects
            raise UpstreamError("the token endpoint answered with something that is not usable JSON") from None
        if not isinstance(answer, dict):
            raise UpstreamError("the token endpoint answered with something that is not a JSON object")
        access_token = answer.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise UpstreamError("the token endpoint answer has no access_token")
        if not B64TOKEN.fullmatch(access_token) or len(access_token) > MAX_TOKEN_BYTES:
            raise UpstreamError("the token endpoint's access_token is not a bearer token of at most 4096 bytes")
        token_type = answer.get("token_type", "bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise UpstreamError("the token endpoint's token_type is not bearer")
        granted_raw = answer.get("scope")
        # RFC 6749 §3.3: an absent scope means the requested scope was granted.
        granted = tuple(sorted(set(granted_raw.split()))) if isinstance(granted_raw, str) else requested
        if granted != requested:
            # Fewer scopes would fail the caller; more would hand out what nobody asked for.
            raise UpstreamError("the token endpoint granted a different scope than requested")
        if "expires_in" not in answer:  # RFC 6749 §5.1 only recommends it
            return IssuedToken(access_token, token_type, self._settings.default_token_lifetime_seconds,
                               default_lifetime=True)
        return IssuedToken(access_token, token_type, self._lifetime(answer["expires_in"]))

    def _lifetime(self, value: Any) -> int:
        """expires_in as whole seconds, capped at MAX_TOKEN_LIFETIME_SECONDS; UpstreamError when unusable."""
        expires_in = _seconds(value)
        if expires_in is None or expires_in < 1:
            raise UpstreamError("the token endpoint answer has no usable expires_in")
        if expires_in > self._settings.max_token_lifetime_seconds:
            logger.warning("expires_in beyond the trusted maximum, capped",
                           extra={"cap": self._settings.max_token_lifetime_seconds})
            return self._settings.max_token_lifetime_seconds
        return expires_in


class _BodyTooLarge(Exception):
    pass


def _read_body(response: requests.Response, deadline: float, read_timeout: float, clock: Clock) -> bytes:
    """The answer's body, at most MAX_BODY_BYTES, read before the deadline."""
    raw = response.raw
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline - clock.monotonic()
        if left <= 0:
            raise ReadTimeoutError(None, response.url, "the fetch deadline passed")  # type: ignore[arg-type]
        sock = getattr(raw.connection, "sock", None)
        if sock is not None:
            # Each read waits at most until the deadline: a body trickled a byte at a time cannot outlast it.
            sock.settimeout(min(read_timeout, left))
        chunk = raw.read1(MAX_BODY_BYTES + 1 - size)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _BodyTooLarge()
        chunks.append(chunk)


def _failure_kind(error: BaseException) -> str:
    """`timeout` or `unreachable`, from an exception of requests or urllib3 and what it wraps."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (ConnectTimeoutError, ReadTimeoutError, TimeoutError)) or \
                type(seen).__name__ in ("Timeout", "ConnectTimeout", "ReadTimeout"):
            return "timeout"
        reason = getattr(seen, "reason", None)
        seen = reason if isinstance(reason, BaseException) else (
            seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None)
    return "unreachable"


def _seconds(value: Any) -> int | None:
    """expires_in as whole seconds: a JSON number or numeric string; None when unusable."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value) if not isinstance(value, int) else value
    except ValueError:
        return None
    if isinstance(number, float) and not math.isfinite(number):
        return None
    return int(number)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _retry_after(header: str | None) -> int | None:
    """Whole seconds a Retry-After header asks for (at most an hour); None when absent or junk."""
    if not header:
        return None
    try:
        return min(MAX_RETRY_AFTER, max(1, math.ceil(Retry().parse_retry_after(header))))
    except (InvalidHeader, OverflowError, ValueError):
        return None


def _error_code(body: bytes) -> str | None:
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return None
    code = answer.get("error") if isinstance(answer, dict) else None
    # Only a well-formed OAuth error code is ever logged, never free text from the body.
    return code if isinstance(code, str) and code.replace("_", "").isalpha() and len(code) < 40 else None
