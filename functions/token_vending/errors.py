"""Errors a vend can end in, each carrying the HTTP answer it maps to.

They are raised where the problem is detected and turned into a response in
one place (app.py). Descriptions are written for the caller: they never hold
a secret, a token or an upstream response body.
"""

from __future__ import annotations

from enum import StrEnum


class VendingError(Exception):
    status: int = 500
    code: str = "internal_error"
    default_description: str = "internal error"

    def __init__(self, description: str | None = None, *, retry_after: int | None = None) -> None:
        self.description = description or self.default_description
        self.retry_after = retry_after
        self.audited: dict[str, str] = {}  # what the answer's audit record adds (never a secret)
        super().__init__(self.description)


class InvalidRequest(VendingError):
    status, code, default_description = 400, "invalid_request", "invalid request"


class UnknownApp(VendingError):
    status, code, default_description = 404, "unknown_app", "no such application"


class AccessDenied(VendingError):
    status, code, default_description = 403, "access_denied", "caller is not allowed for this application"


class InvalidScope(VendingError):
    status, code, default_description = 403, "invalid_scope", "scope not allowed for this application"


class SlowDown(VendingError):
    """A report about a token minted moments ago: refused so that report-and-vend cannot loop mints."""

    status, code, default_description = 429, "slow_down", "this token was minted moments ago; report it later"


class MintLimitReached(VendingError):
    """A mint budget for this clock hour is spent: the app's, or a caller's (`budget`), whose holder spent it."""

    status, code = 429, "mint_limit_reached"

    def __init__(self, budget: str = "app", holder: str = "", *, retry_after: int | None = None) -> None:
        super().__init__(SPENT_BUDGETS[budget], retry_after=retry_after)
        self.audited["budget"] = budget
        self.audited["budget_holder"] = holder  # "" for the app's budget


SPENT_BUDGETS = {"app": "this application has fetched as many tokens as allowed this hour",
                 "caller": "this caller's requests have fetched as many tokens as allowed this hour"}


class UpstreamError(VendingError):
    status, code, default_description = 502, "upstream_error", "the token endpoint gave an unusable answer"


class CredentialsRejected(UpstreamError):
    """The token endpoint refused the app's client credentials (invalid_client)."""

    default_description = "the token endpoint rejected the application's credentials"


class UpstreamUnavailable(VendingError):
    status, code, default_description = 503, "upstream_unavailable", "the token endpoint is unavailable"


class UpstreamThrottled(UpstreamUnavailable):
    """The endpoint said when to come back (429/503 with Retry-After): remembered, not retried."""


class CredentialsHeldOff(UpstreamUnavailable):
    """The endpoint rejected these credentials moments ago: not asked again until the hold-off ends, unless
    the secret has changed since."""


class TokenInProgress(VendingError):
    """Another container holds this key's lease and its fetch outlasted our wait: the endpoint was not asked."""

    status, code, default_description = (503, "token_in_progress",
                                         "another request is fetching this token; try again shortly")


class DependencyUnavailable(VendingError):
    status, code, default_description = 503, "dependency_unavailable", "a backing service is unavailable"


class ConfigurationError(VendingError):
    """The app's secret (or, with no app, the function's configuration) is unusable. The caller sees a
    bare 500; `detail` goes to the log, where it was found (app.py for a secret, the container for its
    settings: once)."""

    def __init__(self, app: str | None, detail: str) -> None:
        super().__init__()
        self.app = app
        self.detail = detail


class Dependency(StrEnum):
    """A backing service the vend can go on without (its value names the Degraded_<value> metric)."""

    DYNAMODB = "dynamodb"
    KMS = "kms"
    SECRETS_MANAGER = "secretsmanager"


class ServiceMisconfigured(ConfigurationError):
    """An AWS service answered that the function is set up wrong (no such table or key, no access, an invalid
    request): a 500 before any upstream request, never a degraded vend. The log names the service and the
    error code (aws_errors.py)."""

    def __init__(self, dependency: Dependency, error_code: str) -> None:
        super().__init__(None, f"{dependency.value} refused the request: {error_code}")
        self.dependency = dependency
        self.error_code = error_code


class StoreUnavailable(Exception):
    """The shared cache (DynamoDB or KMS) failed; vends go on without it. The text is the AWS error's name."""

    def __init__(self, reason: str, dependency: Dependency = Dependency.DYNAMODB) -> None:
        super().__init__(reason)
        self.dependency = dependency
