"""Get Sangoma CX access tokens from the token vending service.

    from sangoma_token_client import get_token, report_rejected

    token = get_token("billing", "cx.agent-calls cx.queue-calls")
    headers = {"Authorization": f"Bearer {token.access_token}"}
    ...
    if cx_api_answered_401:
        report_rejected("billing", "cx.agent-calls cx.queue-calls", token)

The module-level functions share one TokenClient for the URL in
SANGOMA_TOKEN_VENDING_URL (signing region: SANGOMA_TOKEN_VENDING_REGION, else the
execute-api URL's, else AWS_REGION, else AWS_DEFAULT_REGION or the profile's, else
us-east-1 for the local gateway on a loopback address); build a TokenClient
yourself for anything else.
Every failure raises TokenVendingError with `error` and `error_description`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

from .client import Token, TokenClient, fingerprint, normalize_scopes
from .errors import TokenVendingError

__all__ = ["Token", "TokenClient", "TokenVendingError", "default_client", "fingerprint", "get_token",
           "normalize_scopes", "report_rejected"]

URL_VARIABLE = "SANGOMA_TOKEN_VENDING_URL"
REGION_VARIABLE = "SANGOMA_TOKEN_VENDING_REGION"

_default: TokenClient | None = None
_default_lock = threading.Lock()


def default_client() -> TokenClient:
    """The shared client, built on first use from the environment."""
    global _default
    with _default_lock:
        if _default is None:
            url = os.environ.get(URL_VARIABLE)
            if not url:
                raise TokenVendingError("no_url", f"set {URL_VARIABLE} to the service's VendingUrl")
            _default = TokenClient(url, region=os.environ.get(REGION_VARIABLE) or None)
        return _default


def get_token(app: str, scopes: str | Iterable[str]) -> Token:
    return default_client().get_token(app, scopes)


def report_rejected(app: str, scopes: str | Iterable[str], token: Token | str) -> None:
    default_client().report_rejected(app, scopes, token)
