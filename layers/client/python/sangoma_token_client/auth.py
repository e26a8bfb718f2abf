"""`TokenAuth`: a requests session that carries a vended token and renews it when a CX API rejects it.

    session = requests.Session()
    session.auth = TokenAuth(TokenClient(vending_url), "billing", "cx.agent-calls cx.queue-calls")
    session.get("https://cx.example/api/...")  # Authorization: Bearer <token>

It is what google-auth's AuthorizedSession and requests-oauthlib's OAuth2Session
do for their tokens, written as a requests auth hook so any session (retries,
adapters, proxies) keeps working. This module alone needs requests; the rest of
the package does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import requests

from .client import TOO_EARLY, Token, TokenClient, normalize_scopes
from .errors import TokenVendingError


class TokenAuth(requests.auth.AuthBase):
    """Puts `Authorization: <token type> <token>` on every request, from `client` for `app` and `scopes`.

    On a 401 answer to a request it authorized, it reports that token to the vending service, gets a
    fresh one and sends the request once more, with the same body: a second 401 is returned as it came.
    No resend when the service refuses the report as too early (`slow_down`: the token is younger than
    the service's minimum report age, so the 401 is about something else), nor for a body that cannot be
    sent twice (a file or an iterator: the token is still reported, so the next request gets a new one).
    Other failures of the vending service raise TokenVendingError, as `client.get_token` does.

    Safe to share across threads and sessions (it keeps no state per request; the client is thread-safe).
    It never logs, and never puts the token anywhere but the request's Authorization header.
    """

    def __init__(self, client: TokenClient, app: str, scopes: str | Iterable[str]) -> None:
        self.client = client
        self.app = app
        self.scopes = normalize_scopes(scopes)

    def __repr__(self) -> str:
        return f"TokenAuth(app={self.app!r}, scopes={' '.join(self.scopes)!r})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.client.get_token(self.app, self.scopes)
        request.headers["Authorization"] = authorization(token)

        # A hook per request, holding the token that request carries: threads never share which token to report.
        def on_response(response: requests.Response, **send_options: Any) -> requests.Response:
            return self._renew_on_401(response, token, send_options)

        request.register_hook("response", on_response)  # type: ignore[no-untyped-call]  # untyped in types-requests
        return request

    def _renew_on_401(self, response: requests.Response, token: Token,
                      send_options: dict[str, Any]) -> requests.Response:
        sent = response.request
        # Only a 401 to the request as this auth sent it: a redirect to another host drops the header.
        if response.status_code != 401 or sent.headers.get("Authorization") != authorization(token):
            return response
        try:
            self.client.report_rejected(self.app, self.scopes, token)
        except TokenVendingError as error:
            if error.error == TOO_EARLY:  # the 401 is about something else (a scope): a new token would not do
                return response
            raise
        if not _replayable(sent.body):
            return response
        fresh = self.client.get_token(self.app, self.scopes)
        response.content  # noqa: B018 - read it all, so the connection goes back to the pool
        response.close()
        retry = sent.copy()
        retry.headers["Authorization"] = authorization(fresh)
        # Sent through the adapter, as requests' HTTPDigestAuth resends: the session's response hooks (this one
        # included) do not run on the answer, so a second 401 cannot start another round.
        answer: requests.Response = response.connection.send(retry, **send_options)
        answer.history.append(response)
        answer.request = retry
        return answer


def authorization(token: Token) -> str:
    """The Authorization header value: the token type as the service answered it (bearer written `Bearer`)."""
    scheme = "Bearer" if token.token_type.lower() == "bearer" else token.token_type
    return f"{scheme} {token.access_token}"


def _replayable(body: object) -> bool:
    """A body requests holds whole (bytes or text, or none) can be sent again; a file or an iterator cannot."""
    return body is None or isinstance(body, bytes | str)
