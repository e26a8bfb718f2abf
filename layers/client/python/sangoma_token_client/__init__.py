"""Get Sangoma CX access tokens from the token vending service.

    from sangoma_token_client import get_token, report_rejected

    token = get_token("billing", "cx.agent-calls cx.queue-calls")
    headers = {"Authorization": f"Bearer {token.access_token}"}
    ...
    if cx_api_answered_401:
        report_rejected("billing", "cx.agent-calls cx.queue-calls", token)

or, with requests, let a session do all of that (TokenAuth: the header, and on a
401 a report, a new token and one resend):

    session = requests.Session()
    session.auth = TokenAuth(TokenClient(vending_url), "billing", "cx.agent-calls cx.queue-calls")

The module-level functions share one TokenClient for the URL in
SANGOMA_TOKEN_VENDING_URL (signing region: SANGOMA_TOKEN_VENDING_REGION, else the
execute-api URL's, else AWS_REGION, else AWS_DEFAULT_REGION or the profile's, else
us-east-1 for the local gateway on a plain http loopback URL); build a TokenClient
yourself for anything else.
Every failure raises TokenVendingError with `error` and `error_description`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .client import Token, TokenClient, fingerprint, normalize_scopes
from .errors import TokenVendingError

if TYPE_CHECKING:
    from .auth import TokenAuth

__all__ = ["Token", "TokenAuth", "TokenClient", "TokenVendingError", "default_client", "fingerprint", "get_token",
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


def __getattr__(name: str) -> Any:
    # TokenAuth needs requests, which a Lambda runtime lacks: imported only by those who ask for it (PEP 562).
    if name == "TokenAuth":
        from .auth import TokenAuth

        return TokenAuth
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
