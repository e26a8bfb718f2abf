"""Onboard and look after the apps whose Sangoma credentials the service holds.

    python -m tools.apps validate FILE                  check a secret document (nothing is stored)
    python -m tools.apps put APP FILE [--kms-key KEY]   validate, then create the secret or store a new version
    python -m tools.apps show APP                       its policy and token mode (never the credentials)
    python -m tools.apps list                           the apps under the prefix
    python -m tools.apps check APP --caller ARN --scope S   may that caller have that scope? (nothing is minted)
    python -m tools.apps remove APP [--recovery-days N | --force-now]   schedule the secret's deletion
    python -m tools.apps restore APP                    cancel a scheduled deletion

Each command but validate acts on AWS (your credentials and region; the prefix from
--prefix, else the stack's SecretPrefix: --stack, default sangoma-token-vending) or,
with --local, on the local stack of a running `make serve`. `make apps ARGS="..."` runs
it (LOCAL=1, STACK=, SECRET_PREFIX=, REGION=, PROFILE= add the options); the commands it
prints to run next carry the same ones. Exit status: 0, or 1
with the reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import ClientError
from token_vending.app_config import AppConfig, TokenSharing, parse_app_config
from token_vending.errors import AccessDenied, ConfigurationError, InvalidRequest, InvalidScope
from token_vending.policy import ANY_ARN, ROLE, Caller, caller_matches
from token_vending.request_input import normalize_scopes, parse_app

from . import targets
from .app_secret import Finding, caller_kind, check_secret, has_errors
from .targets import ToolError, aws_errors

MANAGED_BY = ("managed-by", "sangoma-token-vending")
NOT_FOUND = "ResourceNotFoundException"
MIN_RECOVERY_DAYS, MAX_RECOVERY_DAYS = 7, 30  # what Secrets Manager accepts
# What each token mode (the secret's optional "tokens" field) means for callers.
TOKEN_MODE_NOTES = {
    TokenSharing.PER_CALLER: "each caller has tokens of its own, shared only by the sessions of one role",
    TokenSharing.SHARED: "every allowed caller is given the same token per scope set",
}
CACHE_NOTE = (f"within SECRET_CACHE_SECONDS ({targets.DEFAULT_SECRET_CACHE_SECONDS} s by default) every container "
              "of the function")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args, out or sys.stdout))
    except ToolError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


# -- validate ---------------------------------------------------------------------------------------


def validate(args: argparse.Namespace, out: TextIO) -> int:
    text = _read_document(args.file)
    findings = check_secret(text)
    _print_findings(args.file, findings, out)
    if has_errors(findings):
        return 1
    print(f"{args.file}: valid{_summary(text)}", file=out)
    return 0


def _read_document(file: str) -> str:
    try:
        return sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ToolError(f"cannot read {file}: {type(error).__name__}") from None


def _summary(text: str) -> str:
    data = json.loads(text)
    scopes, callers = data.get("allowed_scopes") or [], data.get("allowed_callers") or []
    return f" ({len(scopes)} scope{'s' * (len(scopes) != 1)}, {len(callers)} caller{'s' * (len(callers) != 1)})"


def _print_findings(file: str, findings: list[Finding], out: TextIO) -> None:
    for finding in findings:
        print(f"{file}: {finding}", file=out)


# -- put --------------------------------------------------------------------------------------------


def put(args: argparse.Namespace, out: TextIO) -> int:
    app = _app_name(args.app)
    text = _read_document(args.file)
    findings = check_secret(text)
    _print_findings(args.file, findings, out)
    if has_errors(findings):
        print(f"{args.file}: not stored", file=out)
        return 1
    target = targets.resolve(args)
    name = target.prefix + app
    manager = target.client("secretsmanager")
    tags = [{"Key": MANAGED_BY[0], "Value": MANAGED_BY[1]}, {"Key": "app", "Value": app}, *_extra_tags(args.tag)]
    described = _describe(manager, name)
    if described is None:
        created: dict[str, Any] = {"Name": name, "SecretString": text, "Tags": tags,
                                   "Description": f"Sangoma CX client credentials and access policy of app {app} "
                                                  "(token vending)"}
        if args.kms_key:
            created["KmsKeyId"] = args.kms_key
        with aws_errors("secretsmanager CreateSecret"):
            version = manager.create_secret(**created)["VersionId"]
        print(f"created {name} (version {version}) in {target.where}", file=out)
        print(f"callers in allowed_callers can vend {app}'s tokens now: {_smoke_command(target, args, app, text)}",
              file=out)
        _kms_note(args.kms_key, out)
        return 0
    if described.get("DeletedDate"):
        raise ToolError(f"{name} is scheduled for deletion on {_date(described['DeletedDate'])}: restore it first "
                        f"(make apps ARGS=\"restore {app}\"{targets.make_variables(args)}), then put again")
    current = _current_config(manager, name, app)
    new = parse_app_config(app, text, "")
    if current is not None and json.loads(text) == current[1] and not _key_changes(args.kms_key, described):
        print(f"unchanged: {name} already holds this document; nothing stored", file=out)
        return 0
    with aws_errors("secretsmanager PutSecretValue"):
        if _key_changes(args.kms_key, described):
            version = manager.update_secret(SecretId=name, SecretString=text, KmsKeyId=args.kms_key)["VersionId"]
        else:
            version = manager.put_secret_value(SecretId=name, SecretString=text)["VersionId"]
        manager.tag_resource(SecretId=name, Tags=tags)
    print(f"stored a new version of {name} (version {version}) in {target.where}", file=out)
    _describe_change(current[0] if current else None, new, out)
    _kms_note(args.kms_key, out)
    return 0


def _app_name(app: str) -> str:
    try:
        return parse_app(app)
    except InvalidRequest as error:
        raise ToolError(error.description) from None


def _extra_tags(pairs: list[str] | None) -> list[dict[str, str]]:
    tags = []
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ToolError("--tag takes KEY=VALUE")
        tags.append({"Key": key, "Value": value})
    return tags


def _describe(manager: Any, name: str) -> dict[str, Any] | None:
    try:
        return manager.describe_secret(SecretId=name)  # type: ignore[no-any-return]
    except ClientError as error:
        if targets.code_of(error) == NOT_FOUND:
            return None
        raise ToolError(f"secretsmanager DescribeSecret: {targets.code_of(error)}") from None


def _current_config(manager: Any, name: str, app: str) -> tuple[AppConfig | None, Any] | None:
    """(parsed config or None when unusable, the raw JSON) of the current version; None when it cannot be read."""
    try:
        answer = manager.get_secret_value(SecretId=name)
    except ClientError:
        return None  # no permission to read it: the change is stored without a comparison
    text = answer.get("SecretString") or ""
    try:
        raw = json.loads(text)
    except ValueError:
        return None, None
    try:
        return parse_app_config(app, text, answer.get("VersionId", "")), raw
    except ConfigurationError:
        return None, raw


def _key_changes(kms_key: str | None, described: dict[str, Any]) -> bool:
    return bool(kms_key) and kms_key != described.get("KmsKeyId")


def _describe_change(old: AppConfig | None, new: AppConfig, out: TextIO) -> None:
    """What the new version changes for callers, without naming a credential."""
    if old is None or (old.client_id, old.client_secret) != (new.client_id, new.client_secret):
        print(f"new credentials: {CACHE_NOTE} uses them, and tokens minted with the old ones are no longer served "
              "(they stay in the token table until they expire)", file=out)
    elif old.tokens is not new.tokens:
        print(f"same credentials, token mode {old.tokens.value} -> {new.tokens.value}: {CACHE_NOTE} applies it: "
              f"{TOKEN_MODE_NOTES[new.tokens]}, minted on their next vends; the {old.tokens.value} tokens are no "
              "longer served (they stay in the token table until they expire)", file=out)
    else:
        print(f"same credentials, policy change only: {CACHE_NOTE} applies it; cached tokens stay valid", file=out)
    if old is None:
        return
    for name, before, after in (("allowed_scopes", old.allowed_scopes, new.allowed_scopes),
                                ("allowed_callers", old.allowed_callers, new.allowed_callers)):
        for added in sorted(set(after) - set(before)):
            print(f"  + {name}: {added}", file=out)
        for removed in sorted(set(before) - set(after)):
            print(f"  - {name}: {removed}", file=out)


def _smoke_command(target: targets.Target, args: argparse.Namespace, app: str, text: str) -> str:
    """`make smoke` for the app just stored, as it works pasted: its scopes, the stack's VendingUrl (a quoted
    placeholder where the stack cannot tell), and locally the demo caller's keys that make serve's gateway takes."""
    scopes = [scope for scope in json.loads(text).get("allowed_scopes") or [] if isinstance(scope, str)]
    scope = shlex.quote(" ".join(scopes) or "<scope>")
    if target.local:
        from .smoke import local_keys

        return f"{local_keys()} make smoke URL={target.vending_url} APP={app} SCOPE={scope}"
    try:
        url = shlex.quote(targets.stack_output(target, target.stack, "VendingUrl"))
    except ToolError:
        url = shlex.quote("<the stack's VendingUrl output>")
    variables = "".join(f" {name}={shlex.quote(value)}" for name, value in (("REGION", args.region),
                                                                           ("PROFILE", args.profile)) if value)
    return f"make smoke URL={url} APP={app} SCOPE={scope}{variables}"


def _kms_note(kms_key: str | None, out: TextIO) -> None:
    if kms_key:
        print("note: the function reads this secret only if its role may decrypt with that key: add the key's ARN "
              "to the stack's SecretKmsKeyArns parameter and deploy", file=out)


# -- show, list ---------------------------------------------------------------------------------------


def show(args: argparse.Namespace, out: TextIO) -> int:
    app = _app_name(args.app)
    target = targets.resolve(args)
    name = target.prefix + app
    manager = target.client("secretsmanager")
    described = _describe(manager, name)
    if described is None:
        raise ToolError(f"no app {app}: no secret {name} in {target.where}")
    tags = {tag["Key"]: tag["Value"] for tag in described.get("Tags") or []}
    rows = [("app", app), ("secret", f"{name} in {target.where}"),
            ("changed", _date(described.get("LastChangedDate") or described.get("CreatedDate"))),
            ("encryption", described.get("KmsKeyId") or "aws/secretsmanager (the account's default key)"),
            ("tags", " ".join(f"{key}={value}" for key, value in sorted(tags.items())) or "(none)")]
    if described.get("DeletedDate"):
        rows.append(("deletion", f"scheduled for {_date(described['DeletedDate'])}; the function answers 404 "
                                 f"unknown_app (undo: make apps ARGS=\"restore {app}\"{targets.make_variables(args)})"))
        _print_rows(rows, out)
        return 0
    with aws_errors("secretsmanager GetSecretValue"):
        answer = manager.get_secret_value(SecretId=name)
    text = answer.get("SecretString") or ""
    rows.append(("version", answer.get("VersionId", "?")))
    findings = check_secret(text)
    token_url = targets.stack_token_url(target)
    try:
        config = parse_app_config(app, text, answer.get("VersionId", ""), token_url or "")
    except ConfigurationError:
        config = None
    if config is not None:
        # One-way, computed by the function's own code from the credentials and the stack's token endpoint:
        # the CREDENTIAL_ID column of `make tokens`, to tell which tokens this version minted.
        rows.append(("credential id", config.credential_id if token_url else
                     f"unknown (it depends on the stack's TokenUrl; stack {target.stack or targets.DEFAULT_STACK} "
                     "cannot be read)"))
        rows.append(("tokens", _token_mode(config.tokens, explicit="tokens" in json.loads(text))))
    _print_rows(rows, out)
    if config is not None:
        print("allowed_scopes:", file=out)
        for scope in sorted(config.allowed_scopes) or ["(none: every vend answers 403 invalid_scope)"]:
            print(f"  {scope}", file=out)
        print("allowed_callers:", file=out)
        width = max((len(entry) for entry in config.allowed_callers), default=0)
        for entry in config.allowed_callers:
            kind = caller_kind(entry)
            print(f"  {entry.ljust(width)}  {f'{kind.kind}: {kind.note}' if kind else 'matches nobody'}", file=out)
        if not config.allowed_callers:
            print("  (none: every vend answers 403 access_denied)", file=out)
    else:
        print("the function answers 500 internal_error for this app:", file=out)
    _print_findings("stored secret", findings, out)
    return 0


def _token_mode(mode: TokenSharing, *, explicit: bool) -> str:
    default = "" if explicit else " (the default: the secret has no \"tokens\" field)"
    return f"{mode.value}{default}: {TOKEN_MODE_NOTES[mode]}"


def list_apps(args: argparse.Namespace, out: TextIO) -> int:
    target = targets.resolve(args)
    manager = target.client("secretsmanager")
    rows = []
    with aws_errors("secretsmanager ListSecrets"):
        for page in manager.get_paginator("list_secrets").paginate(
                Filters=[{"Key": "name", "Values": [target.prefix]}], IncludePlannedDeletion=True):
            for listed in page["SecretList"]:
                if not listed["Name"].startswith(target.prefix):
                    continue  # the name filter is a prefix match, but ignores case
                app = listed["Name"][len(target.prefix):]
                tags = {tag["Key"]: tag["Value"] for tag in listed.get("Tags") or []}
                if listed.get("DeletedDate"):
                    status = f"deletion scheduled {_date(listed['DeletedDate'])}"
                else:
                    status = "" if _valid_app(app) else "not an app name the API accepts"
                rows.append({"app": app, "changed": _date(listed.get("LastChangedDate") or listed.get("CreatedDate")),
                             "managed": "yes" if tags.get(MANAGED_BY[0]) == MANAGED_BY[1] else "no",
                             "status": status})
    print(f"apps under {target.prefix} in {target.where}:", file=sys.stderr)
    if not rows:
        print(f"no apps under {target.prefix}", file=out)
        return 0
    columns = ("app", "changed", "managed", "status")
    widths = {name: max(len(name), *(len(row[name]) for row in rows)) for name in columns}
    print("  ".join(name.upper().ljust(widths[name]) for name in columns).rstrip(), file=out)
    for row in sorted(rows, key=lambda row: row["app"]):
        print("  ".join(row[name].ljust(widths[name]) for name in columns).rstrip(), file=out)
    return 0


def _valid_app(app: str) -> bool:
    try:
        parse_app(app)
    except InvalidRequest:
        return False
    return True


def _date(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()
    return "?" if value is None else str(value)


def _print_rows(rows: list[tuple[str, str]], out: TextIO) -> None:
    width = max(len(label) for label, _ in rows) + 1
    for label, value in rows:
        print(f"{(label + ':').ljust(width)} {value}", file=out)


# -- check ------------------------------------------------------------------------------------------


def check(args: argparse.Namespace, out: TextIO) -> int:
    app = _app_name(args.app)
    try:
        scopes = normalize_scopes(args.scope)
    except InvalidRequest as error:
        raise ToolError(f"--scope: the function answers 400 invalid_request: {error.description}") from None
    caller = _caller_as_seen(args.caller, out)
    target = targets.resolve(args)
    name = target.prefix + app
    manager = target.client("secretsmanager")
    try:
        answer = manager.get_secret_value(SecretId=name)
    except ClientError as error:
        if targets.code_of(error) in (NOT_FOUND, "InvalidRequestException"):
            print(f"denied: the function answers 404 unknown_app: no secret {name} in {target.where} "
                  "(or its deletion is scheduled)", file=out)
            return 1
        raise ToolError(f"secretsmanager GetSecretValue: {targets.code_of(error)}") from None
    try:
        config = parse_app_config(app, answer.get("SecretString"), answer.get("VersionId", ""))
    except ConfigurationError as error:
        print(f"denied: the function answers 500 internal_error: the stored secret is unusable ({error.detail})",
              file=out)
        return 1
    scope = " ".join(scopes)
    try:
        config.authorize(Caller.parse(caller), scopes)
    except AccessDenied:
        print(f"denied: the function answers 403 access_denied: no allowed_callers entry of {app} matches {caller}",
              file=out)
        return 1
    except InvalidScope as error:
        print(f"denied: the function answers 403 invalid_scope: {error.description}", file=out)
        return 1
    matched = next(index for index, entry in enumerate(config.allowed_callers) if caller_matches(caller, entry))
    entry = config.allowed_callers[matched]
    kind = caller_kind(entry)
    print(f"allowed: {caller} may have {app}'s token for scope {scope!r} (allowed_callers[{matched}]: {entry}"
          f"{f', {kind.kind}' if kind else ''})", file=out)
    holder = config.holder_for(Caller.parse(caller))
    print(f"holder: {holder} (tokens per_caller: its own token)" if holder else
          "holder: none (tokens shared: the app's one token per scope set)", file=out)
    print("(from the stored policy, which the function applies within SECRET_CACHE_SECONDS; nothing was minted)",
          file=out)
    return 0


def _caller_as_seen(caller: str, out: TextIO) -> str:
    """The caller ARN as API Gateway passes it: a role is never a caller itself, its sessions are."""
    role = ROLE.fullmatch(caller)
    if role:
        partition, account, role_name = role.groups()
        session = f"arn:{partition}:sts::{account}:assumed-role/{role_name}/check"
        print(f"note: a role calls as one of its sessions; checking {session}", file=out)
        return session
    if not ANY_ARN.fullmatch(caller):
        raise ToolError("--caller must be an IAM ARN as API Gateway passes it: an IAM user ARN or an assumed-role "
                        "session ARN (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION); a role ARN is checked as "
                        "one of its sessions")
    return caller


# -- remove, restore --------------------------------------------------------------------------------


def remove(args: argparse.Namespace, out: TextIO) -> int:
    app = _app_name(args.app)
    if not MIN_RECOVERY_DAYS <= args.recovery_days <= MAX_RECOVERY_DAYS:
        raise ToolError(f"--recovery-days must be {MIN_RECOVERY_DAYS} to {MAX_RECOVERY_DAYS}")
    target = targets.resolve(args)
    name = target.prefix + app
    manager = target.client("secretsmanager")
    described = _describe(manager, name)
    if described is None:
        raise ToolError(f"no app {app}: no secret {name} in {target.where}")
    if described.get("DeletedDate") and not args.force_now:
        print(f"{name}: deletion already scheduled for {_date(described['DeletedDate'])}", file=out)
        return 0
    with aws_errors("secretsmanager DeleteSecret"):
        if args.force_now:
            manager.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        else:
            deleted = manager.delete_secret(SecretId=name, RecoveryWindowInDays=args.recovery_days)
    if args.force_now:
        print(f"deleted {name} now, without a recovery window: this cannot be undone; the name is free for a new "
              f"put within moments", file=out)
    else:
        print(f"scheduled the deletion of {name} for {_date(deleted.get('DeletionDate'))} "
              f"(recovery window {args.recovery_days} days; undo until then: make apps ARGS=\"restore {app}\""
              f"{targets.make_variables(args)}; "
              f"a new put of {app} is refused until then)", file=out)
    tokens_command = f"make tokens{targets.make_variables(args, prefix=False)}"
    print(f"""What happens now:
- {CACHE_NOTE[:1].upper() + CACHE_NOTE[1:]} answers 404 unknown_app for {app}.
- Its cached tokens stay in the token table until they expire (list them: {tokens_command}); the function never
  serves them again, since it answers 404 before looking. DynamoDB's TTL removes them a day after expiry.
- Tokens already handed out keep working at the CX APIs until they expire: revoke the client at Sangoma to stop
  them.""", file=out)
    return 0


def restore(args: argparse.Namespace, out: TextIO) -> int:
    app = _app_name(args.app)
    target = targets.resolve(args)
    name = target.prefix + app
    manager = target.client("secretsmanager")
    with aws_errors("secretsmanager RestoreSecret"):
        manager.restore_secret(SecretId=name)
    print(f"restored {name}: {CACHE_NOTE} vends for {app} again, and its cached tokens that have not expired are "
          "served again", file=out)
    return 0


# -- the command line --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.apps", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    command = commands.add_parser("validate", help="check a secret document (FILE, or - for stdin); stores nothing")
    command.add_argument("file", metavar="FILE")
    targets.add_arguments(command, help_suppressed=True)  # accepted, so `make apps ... LOCAL=1` never trips on them
    command.set_defaults(run=validate)

    command = commands.add_parser("put", help="validate FILE, then create APP's secret or store a new version")
    command.add_argument("app", metavar="APP")
    command.add_argument("file", metavar="FILE")
    command.add_argument("--kms-key", help="a customer-managed KMS key (id, ARN or alias) to encrypt the secret with "
                                           "(default: the account's aws/secretsmanager key)")
    command.add_argument("--tag", action="append", metavar="KEY=VALUE", help="a further tag (repeatable)")
    targets.add_arguments(command)
    command.set_defaults(run=put)

    command = commands.add_parser("show", help="APP's policy: scopes, callers, token mode; never the credentials")
    command.add_argument("app", metavar="APP")
    targets.add_arguments(command)
    command.set_defaults(run=show)

    command = commands.add_parser("list", help="the apps under the prefix")
    targets.add_arguments(command)
    command.set_defaults(run=list_apps)

    command = commands.add_parser("check", help="may CALLER have SCOPE of APP? (from the stored policy)")
    command.add_argument("app", metavar="APP")
    command.add_argument("--caller", required=True, metavar="ARN",
                         help="the caller's IAM ARN (user, assumed-role session, or a role: checked as its session)")
    command.add_argument("--scope", required=True, action="append", metavar="SCOPE",
                         help='scopes, space-separated ("cx.agent-calls cx.queue-calls"); may repeat')
    targets.add_arguments(command)
    command.set_defaults(run=check)

    command = commands.add_parser("remove", help="schedule the deletion of APP's secret")
    command.add_argument("app", metavar="APP")
    command.add_argument("--recovery-days", type=int, default=MIN_RECOVERY_DAYS,
                         help=f"days until the deletion, during which restore undoes it "
                              f"({MIN_RECOVERY_DAYS}-{MAX_RECOVERY_DAYS}; default {MIN_RECOVERY_DAYS})")
    command.add_argument("--force-now", action="store_true",
                         help="delete at once, without a recovery window (cannot be undone)")
    targets.add_arguments(command)
    command.set_defaults(run=remove)

    command = commands.add_parser("restore", help="cancel the scheduled deletion of APP's secret")
    command.add_argument("app", metavar="APP")
    targets.add_arguments(command)
    command.set_defaults(run=restore)
    return parser


MAKE_ARGS = "--make-args"


def make_argv(argv: list[str], environ: Mapping[str, str] = os.environ) -> list[str]:
    """`make apps ARGS="..."` hands ARGS over in the environment (the Makefile never pastes a value into shell
    text), marked by a first argument --make-args: its words, split as a shell splits them (quotes included), but
    with nothing expanded or run; a word starting with ~/ starts in your home directory, as in a shell."""
    if not argv or argv[0] != MAKE_ARGS:
        return argv
    try:
        words = shlex.split(environ.get("ARGS", ""))
    except ValueError as error:  # an unclosed quote
        raise ToolError(f"ARGS: {error}: quote it as you would in a shell") from None
    return [os.path.expanduser(word) if word.startswith("~/") else word for word in words] + argv[1:]


if __name__ == "__main__":
    try:
        command_line = make_argv(sys.argv[1:])
    except ToolError as failure:
        print(f"error: {failure}", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(command_line))
