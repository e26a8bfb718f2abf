"""The one exception the client raises: what went wrong, in the service's own terms."""

from __future__ import annotations


class TokenVendingError(Exception):
    """A failed call to the vending service.

    `error` is the service's error code (`access_denied`, `invalid_scope`,
    `upstream_unavailable`, ...), API Gateway's error type when the gateway
    refused the request itself (`InvalidSignatureException`, ...), or one of the
    client's own: `unavailable` (the service could not be reached),
    `invalid_response` (an answer the client cannot use, or for another scope
    than asked), `insecure_url` (plain http to anything but a loopback
    address), `invalid_url`, `no_credentials`, `no_region`.
    `status` is the HTTP status when there was an answer; `retry_after` the
    seconds the service asked to wait, when it said so. `code` and `description`
    are read-only aliases of `error` and `error_description`.
    """

    def __init__(self, error: str, error_description: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        self.error = error
        self.error_description = error_description
        self.status = status
        self.retry_after = retry_after
        super().__init__(f"{error}: {error_description}")

    @property
    def code(self) -> str:
        """The same as `error`."""
        return self.error

    @property
    def description(self) -> str:
        """The same as `error_description`."""
        return self.error_description
