"""Sangoma's OAuth2 token endpoint: one client_credentials request, retried by urllib3.

Returns an IssuedToken or raises UpstreamError / CredentialsRejected /
UpstreamUnavailable. Nothing from the response body reaches an error text.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Self

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader, MaxRetryError
from urllib3.util.retry import Retry

from .errors import CredentialsRejected, UpstreamError, UpstreamThrottled, UpstreamUnavailable
from .observability import logger, record_upstream, tracer

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_RETRY_AFTER = 5  # seconds, told to callers when the endpoint did not say


@dataclass(frozen=True)
class IssuedToken:
    access_token: str = field(repr=False)
    token_type: str
    granted_scopes: tuple[str, ...]
    expires_in: int


class _BudgetedRetry(Retry):
    # urllib3 caps a long Retry-After and sleeps anyway; within a 29 s API call we
    # would rather stop retrying and pass the wait on to the caller.
    retry_after_budget = 2.0  # seconds we are willing to sleep for one Retry-After
    def increment(self, method: str | None = None, url: str | None = None, response: Any = None,
                  error: Exception | None = None, _pool: Any = None, _stacktrace: Any = None) -> Self:
        asked = _retry_after(response.headers.get("Retry-After")) if response is not None else None
        if asked is not None and asked > self.retry_after_budget:
            raise MaxRetryError(_pool, url or "", None)
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def get_retry_after(self, response: Any) -> float | None:
        try:
            return super().get_retry_after(response)
        except InvalidHeader:  # urllib3 gives up on a junk Retry-After; back off as if it were absent
            return None


def build_session(max_retries: int) -> requests.Session:
    retry = _BudgetedRetry(
        total=max_retries,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"POST"}),  # the grant is safe to repeat
        backoff_factor=0.3,
        backoff_jitter=0.3,
        backoff_max=2.0,
        respect_retry_after_header=True,
        raise_on_status=False,  # hand the last answer back so we can map it
    )
    session = requests.Session()
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


class TokenEndpoint:
    def __init__(self, session: requests.Session, url: str, connect_timeout: float, read_timeout: float,
                 max_lifetime_seconds: int) -> None:
        self._session = session
        self._url = url
        self._timeout = (connect_timeout, read_timeout)
        self._max_lifetime = max_lifetime_seconds

    @tracer.capture_method(capture_response=False)
    def fetch(self, client_id: str, client_secret: str, scopes: tuple[str, ...]) -> IssuedToken:
        started = time.perf_counter()
        try:
            response = self._session.post(
                self._url,
                data={"grant_type": "client_credentials", "scope": " ".join(scopes)},
                auth=(client_id, client_secret),
                headers={"Accept": "application/json"},
                timeout=self._timeout,
            )
        except requests.RequestException as error:
            record_upstream("unreachable", _ms_since(started))
            logger.warning("token endpoint unreachable", extra={"reason": type(error).__name__})
            raise UpstreamUnavailable(retry_after=DEFAULT_RETRY_AFTER) from None
        latency = _ms_since(started)
        if response.status_code in RETRY_STATUSES:
            record_upstream(f"http_{response.status_code}", latency)
            asked = _retry_after(response.headers.get("Retry-After"))
            logger.warning("token endpoint unavailable", extra={"status": response.status_code,
                                                                "retry_after": asked})
            if asked is not None:
                raise UpstreamThrottled(retry_after=asked)
            raise UpstreamUnavailable(retry_after=DEFAULT_RETRY_AFTER)
        if response.status_code != 200:
            error_code = _error_code(response)
            record_upstream(f"http_{response.status_code}", latency)
            logger.warning("token endpoint refused", extra={"status": response.status_code, "error": error_code})
            if response.status_code == 401 or error_code == "invalid_client":
                raise CredentialsRejected()
            raise UpstreamError(f"the token endpoint refused the request ({response.status_code})")
        try:
            token = self._parse(response, scopes)
        except UpstreamError as error:
            record_upstream("unusable", latency)
            logger.warning("token endpoint answer unusable", extra={"problem": error.description})
            raise
        record_upstream("ok", latency)
        return token

    def _parse(self, response: requests.Response, requested: tuple[str, ...]) -> IssuedToken:
        try:
            body = response.json()
        except ValueError:
            raise UpstreamError("the token endpoint answered with something that is not JSON") from None
        if not isinstance(body, dict):
            raise UpstreamError("the token endpoint answered with something that is not a JSON object")
        access_token = body.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise UpstreamError("the token endpoint answer has no access_token")
        expires_in = _seconds(body.get("expires_in"))
        if expires_in is None or expires_in < 1:
            raise UpstreamError("the token endpoint answer has no usable expires_in")
        if expires_in > self._max_lifetime:
            logger.warning("expires_in beyond the trusted maximum, capped", extra={"cap": self._max_lifetime})
            expires_in = self._max_lifetime
        granted_raw = body.get("scope")
        # RFC 6749 §3.3: an absent scope means the requested scope was granted.
        granted = tuple(sorted(set(granted_raw.split()))) if isinstance(granted_raw, str) else requested
        if granted != requested:
            # Fewer scopes would fail the caller; more would hand out what nobody asked for.
            raise UpstreamError("the token endpoint granted a different scope than requested")
        token_type = body.get("token_type") if isinstance(body.get("token_type"), str) else "bearer"
        return IssuedToken(
            access_token=access_token,
            token_type=str(token_type),
            granted_scopes=granted,
            expires_in=expires_in,
        )


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
    """Whole seconds a Retry-After header asks for; None when absent or junk."""
    if not header:
        return None
    try:
        return max(1, math.ceil(Retry().parse_retry_after(header)))
    except InvalidHeader:
        return None


def _error_code(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("error") if isinstance(body, dict) else None
    # Only a well-formed OAuth error code is ever logged, never free text from the body.
    return code if isinstance(code, str) and code.replace("_", "").isalpha() and len(code) < 40 else None
