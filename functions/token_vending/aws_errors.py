"""What an AWS error means for a vend: an outage to work around, or a misconfiguration to fail on.

Degrading is for outages only (throttling, 5xx, timeouts, lost connections): the vend goes on without
the service. An answer that says the function is set up wrong (a table or key that does not exist, no
permission, a request the service calls invalid, botocore refusing the parameters) would degrade into
minting without single flight or budgets, so it is a 500 before any upstream request instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)

from .errors import Dependency, ServiceMisconfigured, StoreUnavailable

# Error codes that mean "wrong name, no access, invalid request": nothing a retry or a wait would change.
MISCONFIGURATION_CODES = frozenset({
    "ResourceNotFoundException",  # DynamoDB: no such table
    "AccessDeniedException",  # our role may not use the table or key
    "ValidationException",  # the service calls the request invalid
    "NotFoundException",  # KMS: no such key or alias
    "DisabledException",  # KMS: the key is disabled
    "KMSInvalidStateException",  # KMS: the key is pending deletion or import
    "InvalidKeyUsageException",  # KMS: not an encryption key
    "UnrecognizedClientException",  # credentials the service does not know
})
# botocore's own refusals before any request: the settings (names, region, credentials) are wrong.
MISCONFIGURATION_ERRORS = (ParamValidationError, NoRegionError, NoCredentialsError, PartialCredentialsError)


class AwsFailure(StrEnum):
    OUTAGE = "outage"
    MISCONFIGURATION = "misconfiguration"


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def classify(error: ClientError | BotoCoreError) -> AwsFailure:
    if isinstance(error, ClientError):
        return AwsFailure.MISCONFIGURATION if error_code(error) in MISCONFIGURATION_CODES else AwsFailure.OUTAGE
    return AwsFailure.MISCONFIGURATION if isinstance(error, MISCONFIGURATION_ERRORS) else AwsFailure.OUTAGE


def failure_name(error: ClientError | BotoCoreError) -> str:
    """The error's name only (its code, or botocore's class): never a message that may quote a value."""
    return error_code(error) if isinstance(error, ClientError) else type(error).__name__


def translated(error: ClientError | BotoCoreError, dependency: Dependency) -> StoreUnavailable | ServiceMisconfigured:
    """The error a failed call to the shared cache raises: StoreUnavailable for an outage, else a 500."""
    if classify(error) is AwsFailure.MISCONFIGURATION:
        return ServiceMisconfigured(dependency, failure_name(error))
    return StoreUnavailable(failure_name(error), dependency)


@contextmanager
def store_errors(dependency: Dependency = Dependency.DYNAMODB) -> Iterator[None]:
    """Raise what a DynamoDB or KMS failure means (StoreUnavailable or ServiceMisconfigured), never botocore's
    own error: its message can quote the request. Nothing is swallowed."""
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise translated(error, dependency) from None
