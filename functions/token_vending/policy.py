"""Who may have which token: callers and an app's policy, each parsed once, and the checks between them.

Pure functions and values. Everything fails closed: an empty or missing list allows nobody, an
`allowed_callers` entry that is not understood matches nothing.

A caller's *holder* names whose token it is given (an app that shares tokens has none): the sessions
of one role share the role's tokens, so the holder of `arn:P:sts::A:assumed-role/ROLE/SESSION` is
`arn:P:sts::A:assumed-role/ROLE`; any other principal (an IAM user, a federated user) holds its own,
under its ARN. Its *budget holder* pays for the mints its requests cause: its holder, except that the
federated users of an account, whose names the IAM user calling GetFederationToken picks at will,
share one, `arn:P:sts::A:federated-user`.

Role and user names are matched ignoring case, as IAM does (they are unique regardless of case), and
holders name them in lower case: a holder is the same whichever case the name arrives in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from .errors import AccessDenied, InvalidScope

ACCOUNT_ID = re.compile(r"\d{12}")
# arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION (the session ARN drops the role's path)
ASSUMED_ROLE = re.compile(r"arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([\w+=,.@-]+)/[\w+=,.@-]+")
# arn:PARTITION:iam::ACCOUNT:role/OPTIONAL/PATH/ROLE
ROLE = re.compile(r"arn:(aws[a-z-]*):iam::(\d{12}):role/(?:[\x21-\x7e]*/)?([\w+=,.@-]+)")  # paths: any printable ASCII
ANY_ARN = re.compile(r"arn:(aws[a-z-]*):[a-z]+::(\d{12}):.+")
# arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE: the holder of a role's sessions
HOLDER_OF_ROLE = re.compile(r"arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([\w+=,.@-]+)")
# A caller's ARN in one match (the two above at once): partition, service, account, and the role of a session.
CALLER_ARN = re.compile(r"arn:(aws[a-z-]*):([a-z]+)::(\d{12}):(?:assumed-role/([\w+=,.@-]+)/[\w+=,.@-]+|.+)")
# The principals whose names IAM compares ignoring case: what canonical_arn lowers (a session name stays).
NAMED_PRINCIPAL = re.compile(
    r"(arn:aws[a-z-]*:(?:iam|sts)::\d{12}:)(user/(?:[\x21-\x7e]*/)?|role/(?:[\x21-\x7e]*/)?|assumed-role/|"
    r"federated-user/)([\w+=,.@-]+)(/[\w+=,.@-]+)?")
FEDERATED_USER = re.compile(r"(arn:aws[a-z-]*:sts::\d{12}:federated-user)/[\w+=,.@-]+")

Role = tuple[str, str, str]  # partition, account, role name


class Caller(NamedTuple):
    """An IAM identity as API Gateway sends it (`requestContext.identity.userArn`), parsed once."""

    arn: str  # canonical (canonical_arn)
    account: str | None  # of an ARN we understand; None matches no account entry
    role: Role | None  # the role of an assumed-role session
    holder: str  # whose tokens it is given: its role's, for a session of one; else its own ARN
    budget_holder: str  # who pays for the mints it causes: its holder, or its account's federated users

    @classmethod
    def parse(cls, arn: str) -> Caller:
        arn = canonical_arn(arn)
        parsed = CALLER_ARN.fullmatch(arn)
        if parsed is None:
            return cls(arn, None, None, arn, arn)
        partition, service, account, name = parsed.groups()
        role = (partition, account, name) if service == "sts" and name else None
        holder = role_holder(role) if role else arn
        federated = FEDERATED_USER.fullmatch(arn)
        return cls(arn, account, role, holder, federated[1] if federated else holder)


def canonical_arn(arn: str) -> str:
    """The ARN with its user, role or federated user name in lower case (IAM compares them so)."""
    named = NAMED_PRINCIPAL.fullmatch(arn)
    if named is None:
        return arn
    prefix, kind, name, session = named.groups()
    return f"{prefix}{kind}{name.lower()}{session or ''}"


def role_holder(role: Role) -> str:
    """The holder every session of a role shares: the session ARN without the session."""
    partition, account, name = role
    return f"arn:{partition}:sts::{account}:assumed-role/{name}"


def target_holder(arn: str) -> str:
    """The holder a scheduled pre-warm mints for: the caller's, where a role ARN stands for its sessions."""
    role = ROLE.fullmatch(canonical_arn(arn))
    return role_holder((role[1], role[2], role[3])) if role else Caller.parse(arn).holder


@dataclass(frozen=True)
class CallerPolicy:
    """An app's `allowed_callers`, parsed once: the accounts, exact principals and roles it admits."""

    accounts: frozenset[str]
    principals: frozenset[str]  # ARNs, matched exactly
    roles: frozenset[Role]  # every session of these roles

    @classmethod
    def parse(cls, entries: Iterable[str]) -> CallerPolicy:
        accounts: set[str] = set()
        principals: set[str] = set()
        roles: set[Role] = set()
        for entry in entries:
            if ACCOUNT_ID.fullmatch(entry):
                accounts.add(entry)
                continue
            entry = canonical_arn(entry)
            if role := ROLE.fullmatch(entry):
                roles.add((role[1], role[2], role[3]))
            if ANY_ARN.fullmatch(entry):
                principals.add(entry)
        return cls(frozenset(accounts), frozenset(principals), frozenset(roles))

    def admits(self, caller: Caller) -> bool:
        return caller.account in self.accounts or caller.arn in self.principals or caller.role in self.roles

    def admits_anyone(self) -> bool:
        return bool(self.accounts or self.principals or self.roles)

    def admits_holder(self, holder: str) -> bool:
        """Could a caller of this holder be admitted ("": any caller)? What the scheduled run asks of a token
        it would mint or refresh for that holder."""
        if not holder:
            return self.admits_anyone()
        role = HOLDER_OF_ROLE.fullmatch(holder)
        if role is None:
            return self.admits(Caller.parse(holder))
        partition, account, name = role.groups()
        return account in self.accounts or (partition, account, name) in self.roles or \
            any(principal.startswith(holder + "/") for principal in self.principals)  # one of its sessions


def caller_matches(caller_arn: str, allowed: str) -> bool:
    """Does one `allowed_callers` entry admit this caller?"""
    return CallerPolicy.parse([allowed]).admits(Caller.parse(caller_arn))


def authorize(caller: Caller | None, callers: CallerPolicy, scopes: Iterable[str],
              allowed_scopes: frozenset[str]) -> None:
    """Raise unless the caller and every scope are allowed. Caller first, as the API promises."""
    if caller is None:
        raise AccessDenied("no IAM caller identity in the request")
    if not callers.admits(caller):
        raise AccessDenied()
    check_scopes(scopes, allowed_scopes)


def authorize_holder(holder: str, callers: CallerPolicy, scopes: Iterable[str],
                     allowed_scopes: frozenset[str]) -> None:
    """Raise unless some caller of the holder ("": any caller) could still be vended these scopes: what the
    scheduled run asks before it mints or refreshes a token nobody asked for yet."""
    if not callers.admits_holder(holder):
        raise AccessDenied("the app allows no caller of this holder" if holder else "the app allows no caller")
    check_scopes(scopes, allowed_scopes)


def check_scopes(scopes: Iterable[str], allowed_scopes: frozenset[str]) -> None:
    """Raise InvalidScope unless every scope is allowed."""
    denied = [scope for scope in scopes if scope not in allowed_scopes]
    if denied:
        raise InvalidScope(f"scope not allowed for this application: {' '.join(denied)}")
