"""What a cached token is, what it is keyed by, and its public fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import NamedTuple


def fingerprint(access_token: str) -> str:
    """First 16 hex characters of the token's SHA-256: safe to log, return and store."""
    return hashlib.sha256(access_token.encode()).hexdigest()[:16]


def servable(expires_at: float, renewal_blocked: bool, now: float, min_ttl_seconds: float) -> bool:
    """May a cached token be handed out? Only with more than min_ttl left, unless the
    endpoint will not renew it yet: then until it expires, and never after."""
    left = expires_at - now
    return left > min_ttl_seconds or (renewal_blocked and left > 0)


class TokenKey(NamedTuple):
    """One cached token per (app, normalized scope set, client credentials, holder)."""

    app: str
    scope: str  # normalized: sorted, unique, space-separated
    credential_id: str
    holder: str = ""  # who holds it (policy.py): "" when the app shares one token per scope set

    @property
    def table_key(self) -> str:
        # Scope strings and holder ARNs can be long: the item key names them by a digest.
        digest = hashlib.sha256(f"{self.holder}\n{self.scope}".encode()).hexdigest()[:32]
        return f"token#{self.app}#{self.credential_id}#{digest}"

    @property
    def lease_key(self) -> str:
        return "lease#" + self.table_key.removeprefix("token#")


@dataclass(frozen=True)
class CachedToken:
    access_token: str = field(repr=False)
    token_type: str
    scope: str
    expires_at: float  # epoch seconds
    # The endpoint answered with the token it had already given: it will not renew
    # before expiry, so keep serving this one instead of asking again.
    renewal_blocked: bool = False
    minted_at: float = 0.0  # epoch seconds when it was fetched (0: not known)

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.access_token)

    def whole_seconds_left(self, now: float) -> int:
        """What a cached token's answer says: whole seconds left, never rounded up."""
        return max(0, int(self.expires_at - now))

    def servable(self, now: float, min_ttl_seconds: float) -> bool:
        return servable(self.expires_at, self.renewal_blocked, now, min_ttl_seconds)

    @cached_property  # a token in memory answers many vends
    def expires_at_rfc3339(self) -> str:
        return datetime.fromtimestamp(int(self.expires_at), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def answer(self, expires_in: int) -> str:
        """The vend's JSON answer for this token; `expires_in` is what the answer says is left."""
        return json.dumps({"access_token": self.access_token, "token_type": self.token_type, "scope": self.scope,
                           "expires_in": expires_in, "expires_at": self.expires_at_rfc3339,
                           "fingerprint": self.fingerprint})
