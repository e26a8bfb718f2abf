"""Who may have which token: caller matching and scope checks against an app's policy.

Pure functions. Everything fails closed: an empty or missing list allows nobody,
an entry that is not understood matches nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import AccessDenied, InvalidScope

ACCOUNT_ID = re.compile(r"\d{12}")
# arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION (the session ARN drops the role's path)
ASSUMED_ROLE = re.compile(r"arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([\w+=,.@-]+)/[\w+=,.@-]+")
# arn:PARTITION:iam::ACCOUNT:role/OPTIONAL/PATH/ROLE
ROLE = re.compile(r"arn:(aws[a-z-]*):iam::(\d{12}):role/(?:[\x21-\x7e]*/)?([\w+=,.@-]+)")  # paths: any printable ASCII
ANY_ARN = re.compile(r"arn:(aws[a-z-]*):[a-z]+::(\d{12}):.+")


def caller_matches(caller_arn: str, allowed: str) -> bool:
    """Does one `allowed_callers` entry admit this caller?"""
    if ACCOUNT_ID.fullmatch(allowed):
        caller = ANY_ARN.fullmatch(caller_arn)
        return bool(caller) and caller.group(2) == allowed  # type: ignore[union-attr]
    if caller_arn == allowed:
        return bool(ANY_ARN.fullmatch(allowed))
    session = ASSUMED_ROLE.fullmatch(caller_arn)
    role = ROLE.fullmatch(allowed)
    return bool(session and role) and session.groups() == role.groups()  # type: ignore[union-attr]


def authorize(caller_arn: str | None, allowed_callers: Iterable[str], scopes: Iterable[str],
              allowed_scopes: frozenset[str]) -> None:
    """Raise unless the caller and every scope are allowed. Caller first, as the API promises."""
    if not caller_arn:
        raise AccessDenied("no IAM caller identity in the request")
    if not any(caller_matches(caller_arn, entry) for entry in allowed_callers):
        raise AccessDenied()
    check_scopes(scopes, allowed_scopes)


def authorize_unrequested(allowed_callers: Iterable[str], scopes: Iterable[str],
                          allowed_scopes: frozenset[str]) -> None:
    """Raise unless some caller could still be vended these scopes: what the scheduled run asks before
    it mints or refreshes a token nobody asked for yet."""
    if not any(True for _ in allowed_callers):
        raise AccessDenied("the app allows no caller")
    check_scopes(scopes, allowed_scopes)


def check_scopes(scopes: Iterable[str], allowed_scopes: frozenset[str]) -> None:
    """Raise InvalidScope unless every scope is allowed."""
    denied = [scope for scope in scopes if scope not in allowed_scopes]
    if denied:
        raise InvalidScope(f"scope not allowed for this application: {' '.join(denied)}")
