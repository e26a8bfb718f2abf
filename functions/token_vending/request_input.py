"""Parsing and validating what a caller (or a pre-warm entry) asks for.

Pure functions: they run before any AWS or network call, so bad input costs nothing.
`ApiCall` is an API Gateway event as sent; `parse_token_request` validates it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from .errors import InvalidRequest
from .policy import Caller

# The app name becomes part of a secret name: this pattern is what keeps a
# caller from naming any other secret.
APP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
APP_NAME_RULE = "app name must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]{1,256}")
MAX_SCOPES = 32
FINGERPRINT = re.compile(r"[0-9a-f]{16}")


class ApiCall(NamedTuple):
    """What an API Gateway event of the token resource carries, as sent: nothing validated yet."""

    method: str
    app: str | None
    scope_values: tuple[str, ...]  # every `scope` parameter
    fingerprint: str | None  # a report's `fingerprint` parameter
    caller_arn: str | None  # the IAM identity API Gateway authenticated

    @property
    def caller(self) -> Caller | None:
        return Caller.parse(self.caller_arn) if self.caller_arn else None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> ApiCall:
        single = event.get("queryStringParameters") or {}
        multi = event.get("multiValueQueryStringParameters") or {}
        scopes = multi.get("scope") or ([single["scope"]] if single.get("scope") is not None else [])
        identity = (event.get("requestContext") or {}).get("identity") or {}
        caller = identity.get("userArn")  # absent pieces mean no identity (403), not a crash
        return cls(str(event.get("httpMethod") or ""), (event.get("pathParameters") or {}).get("app"), tuple(scopes),
                   single.get("fingerprint"), caller if isinstance(caller, str) and caller else None)


class TokenRequest(NamedTuple):
    app: str
    scopes: tuple[str, ...]  # sorted, without duplicates

    @property
    def scope(self) -> str:
        """The normalized scope string: what is sent upstream, keyed on and answered."""
        return " ".join(self.scopes)


def parse_app(name: str | None) -> str:
    if not name or not APP_NAME.fullmatch(name):
        raise InvalidRequest(APP_NAME_RULE)
    return name


def normalize_scopes(values: Iterable[str] | None) -> tuple[str, ...]:
    """Split space-separated scope values (the parameter may repeat) into a sorted, unique tuple."""
    tokens: set[str] = set()
    for value in values or ():
        for token in value.split(" "):
            if not token:
                continue  # tolerate doubled or edge spaces
            if not SCOPE_TOKEN.fullmatch(token):
                raise InvalidRequest("malformed scope token")
            tokens.add(token)
            if len(tokens) > MAX_SCOPES:
                raise InvalidRequest(f"at most {MAX_SCOPES} scopes")
    if not tokens:
        raise InvalidRequest("at least one scope is required")
    return tuple(sorted(tokens))


def parse_token_request(app: str | None, scope_values: Iterable[str] | None) -> TokenRequest:
    return TokenRequest(app=parse_app(app), scopes=normalize_scopes(scope_values))


def parse_fingerprint(value: str | None) -> str:
    if not value or not FINGERPRINT.fullmatch(value):
        raise InvalidRequest("fingerprint must be the 16 hex characters the vend answer carries")
    return value
