"""Checking an app's secret document before it is stored.

What the function itself would refuse comes from its own code (parse_app_config,
SCOPE_TOKEN, the ARN patterns of policy.py); what is stricter lives here: HTTP Basic
auth's limits on the credentials, scope and caller entries that would never match,
and warnings for entries that match more, or less, than they seem to.
Every finding names the field (and index), never a value.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from token_vending.app_config import TokenSharing, parse_app_config
from token_vending.errors import ConfigurationError
from token_vending.policy import ACCOUNT_ID, ASSUMED_ROLE, ROLE
from token_vending.request_input import SCOPE_TOKEN

MAX_SECRET_BYTES = 65_536  # Secrets Manager's limit for a SecretString
KNOWN_FIELDS = ("client_id", "client_secret", "allowed_scopes", "allowed_callers", "tokens")
TOKEN_MODES = " or ".join(f'"{mode.value}"' for mode in TokenSharing)  # what the function accepts
# The function sends the credentials in HTTP Basic auth raw, as Sangoma documents (`curl --basic --user id:secret`),
# not form-encoded first as RFC 6749 §2.3.1 says. For these characters the two differ: a server that form-decodes
# the halves (as RFC 6749 servers do) reads '+' as a space and '%xx' as a byte, and a non-ASCII character's bytes
# depend on the encoding each side assumes.
FORM_DECODED = re.compile(r"[%+]|[^\x00-\x7f]")
FORM_DECODED_NOTE = ("holds '%', '+' or a non-ASCII character: sent raw in HTTP Basic auth, as Sangoma documents, "
                     "but a token endpoint that form-decodes credentials (RFC 6749 §2.3.1) would read another value; "
                     "if the endpoint answers invalid_client, ask Sangoma for credentials without them")
# arn:PARTITION:iam::ACCOUNT:user/OPTIONAL/PATH/NAME: matched exactly by the function (policy.ANY_ARN).
USER = re.compile(r"arn:(aws[a-z-]*):iam::(\d{12}):user/(?:[\x21-\x7e]*/)?[\w+=,.@-]+")


@dataclass(frozen=True)
class Finding:
    level: str  # "error" (the document is refused) or "warning"
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.field}: {self.message}"


@dataclass(frozen=True)
class CallerKind:
    kind: str  # role | user | account | session
    note: str


def check_secret(text: str) -> list[Finding]:
    """Every problem of a secret document, in document order; no finding holds a value."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SECRET_BYTES:
        return [Finding("error", "secret", f"larger than the {MAX_SECRET_BYTES:,} bytes Secrets Manager stores")]
    duplicates: list[str] = []
    try:
        data: Any = json.loads(text, object_pairs_hook=_noting_duplicates(duplicates))
    except json.JSONDecodeError as error:
        # The decoder's message names a position and what it expected, never the text itself.
        return [Finding("error", "secret", f"not valid JSON ({error.msg} at line {error.lineno}, "
                                           f"column {error.colno})")]
    if not isinstance(data, dict):
        return [Finding("error", "secret", "must be a JSON object {\"client_id\": ..., \"client_secret\": ..., "
                                           "\"allowed_scopes\": [...], \"allowed_callers\": [...]}")]
    findings = [Finding("warning", _field_name(name), "appears more than once; only the last one counts")
                for name in duplicates]
    findings += [Finding("warning", _field_name(name), "not a field the function reads (ignored); expected "
                                                       + ", ".join(KNOWN_FIELDS))
                 for name in data if name not in KNOWN_FIELDS]
    findings += _credential("client_id", data.get("client_id"), colon_allowed=False)
    findings += _credential("client_secret", data.get("client_secret"), colon_allowed=True)
    findings += _scopes(data)
    findings += _callers(data)
    findings += _tokens(data)
    if not any(finding.level == "error" for finding in findings):
        try:  # the function's own parser: anything it refuses must already be an error above
            parse_app_config("(checked)", text, "")
        except ConfigurationError as error:
            findings.append(Finding("error", "secret", error.detail))
    return findings


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(finding.level == "error" for finding in findings)


def caller_kind(entry: str) -> CallerKind | None:
    """What an allowed_callers entry admits, or None when it admits nobody the function will ever see."""
    if ACCOUNT_ID.fullmatch(entry):
        return CallerKind("account", "every IAM principal of the account")
    if ROLE.fullmatch(entry):
        return CallerKind("role", "every session of the role")
    if USER.fullmatch(entry):
        return CallerKind("user", "the IAM user")
    if ASSUMED_ROLE.fullmatch(entry):
        return CallerKind("session", "a session of that name, which whoever may assume the role chooses")
    return None


def _noting_duplicates(duplicates: list[str]) -> Any:
    def pairs_to_dict(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen and key not in duplicates:
                duplicates.append(key)
            seen[key] = value
        return seen

    return pairs_to_dict


def _field_name(name: str) -> str:
    # A field's name is not a value, but keep a stray long key short and printable.
    printable = "".join(c if c.isprintable() else "?" for c in name)
    return printable if len(printable) <= 40 else printable[:37] + "..."


def _credential(name: str, value: Any, *, colon_allowed: bool) -> list[Finding]:
    """HTTP Basic auth (RFC 7617) carries ID and secret as Latin-1 text without control characters;
    the ID cannot hold ':', which separates the two."""
    if not isinstance(value, str) or not value:
        return [Finding("error", name, "must be a non-empty string")]
    findings = []
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        findings.append(Finding("error", name, "holds a character outside Latin-1, which HTTP Basic auth cannot "
                                               "carry (the function would fail to send it)"))
    if any(unicodedata.category(c) == "Cc" for c in value):
        findings.append(Finding("error", name, "holds a control character (a line break or tab?), which HTTP "
                                               "Basic auth cannot carry"))
    if not colon_allowed and ":" in value:
        findings.append(Finding("error", name, "holds ':', which HTTP Basic auth cannot carry in the ID (it "
                                               "separates ID and secret)"))
    if value != value.strip():
        findings.append(Finding("warning", name, "begins or ends with whitespace, which is sent as is; the token "
                                                 "endpoint will likely refuse it"))
    if FORM_DECODED.search(value) and not any(f.message.startswith("holds a character outside") for f in findings):
        findings.append(Finding("warning", name, FORM_DECODED_NOTE))
    return findings


def _string_list(data: dict[str, Any], name: str, empty_means: str) -> tuple[list[Any], list[Finding]]:
    value = data.get(name)
    if value is None or value == []:
        state = "missing" if value is None else "empty"
        return [], [Finding("warning", name, f"{state}: {empty_means}")]
    if not isinstance(value, list):
        return [], [Finding("error", name, "must be a list of strings")]
    return value, []


def _scopes(data: dict[str, Any]) -> list[Finding]:
    scopes, findings = _string_list(data, "allowed_scopes", "the app allows no scope (every vend answers "
                                                            "403 invalid_scope)")
    seen: set[str] = set()
    for index, scope in enumerate(scopes):
        field = f"allowed_scopes[{index}]"
        if not isinstance(scope, str):
            findings.append(Finding("error", field, "must be a string"))
        elif " " in scope.strip() and all(SCOPE_TOKEN.fullmatch(part) for part in scope.split()):
            findings.append(Finding("error", field, "holds a space: list each scope as an entry of its own"))
        elif not SCOPE_TOKEN.fullmatch(scope):
            findings.append(Finding("error", field, "not a scope token (RFC 6749 section 3.3: 1 to 256 printable "
                                                    "ASCII characters, no space, '\"' or '\\')"))
        elif scope in seen:
            findings.append(Finding("warning", field, "repeats an earlier entry"))
        if isinstance(scope, str):
            seen.add(scope)
    return findings


def _tokens(data: dict[str, Any]) -> list[Finding]:
    """The optional token mode, by the function's own rule (TokenSharing): absent means per_caller."""
    if "tokens" not in data:
        return []
    try:
        TokenSharing(data["tokens"])
    except ValueError:
        return [Finding("error", "tokens", f"must be {TOKEN_MODES} (absent means {TokenSharing.PER_CALLER.value})")]
    return []


def _callers(data: dict[str, Any]) -> list[Finding]:
    callers, findings = _string_list(data, "allowed_callers", "the app allows no caller (every vend answers "
                                                              "403 access_denied)")
    seen: set[str] = set()
    for index, entry in enumerate(callers):
        field = f"allowed_callers[{index}]"
        if not isinstance(entry, str):
            findings.append(Finding("error", field, "must be a string"))
            continue
        kind = caller_kind(entry)
        if entry != entry.strip():
            findings.append(Finding("error", field, "begins or ends with whitespace; callers are matched exactly, "
                                                    "so it would match nobody"))
        elif "*" in entry or "?" in entry:
            findings.append(Finding("error", field, "wildcards match nothing here: name each role, user or account"))
        elif kind is None:
            findings.append(Finding("error", field, "not an IAM role ARN, IAM user ARN or 12-digit account ID"))
        elif kind.kind == "account":
            findings.append(Finding("warning", field, "an account ID admits every IAM principal of that account"))
        elif kind.kind == "session":
            findings.append(Finding("warning", field, "an assumed-role session ARN is no narrower than its role: "
                                                      "whoever may assume the role chooses the session name; and it "
                                                      "never matches the role's other sessions: allow the role's ARN "
                                                      "(arn:aws:iam::ACCOUNT:role/NAME)"))
        if entry in seen:
            findings.append(Finding("warning", field, "repeats an earlier entry"))
        seen.add(entry)
    return findings
