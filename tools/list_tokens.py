"""List the cached tokens in the token table, soonest expiry first: never the token itself.

    make tokens STACK=<stack name>                   # against AWS (your usual credentials; REGION=...)
    make tokens TABLE=<TokenTableName output>        # the same, naming the table
    make tokens LOCAL=1                              # against `make serve`'s local stack
    make tokens STACK=<stack name> CALLERS=1 SINCE=7d   # and who received each token (audit log)
    python -m tools.list_tokens [--table NAME | --stack NAME | --local] [--app APP] [--region R] [--json]
                                [--callers [--since 7d] [--log-group NAME]]

It reads the same metadata the scheduled pre-warm reads (TokenStore.entries, one parser):
app, holder (whose token it is: the calling role or user; "(shared)" for a token every
allowed caller of the app shares), scope, when it was minted, expiry, fingerprint (the vend
answer's `fingerprint`), and which credentials minted it (credential id and the secret version). It needs
`dynamodb:Scan` on the table; the sealed tokens are not read, so no KMS access.
SERVED says whether the function still serves each entry under its app's current secret, decided as the
scheduled run decides (prewarm.not_served): `yes`, or `no:` and why (`now_shared`, `now_per_caller`: a mode
the app no longer uses; `caller_not_admitted`, `scope_not_allowed`: the policy no longer allows it to its
holder; `rotated_credentials`, `app_removed`); `?` where the secret or the stack's TokenUrl cannot be read
(`secretsmanager:GetSecretValue` on the prefix, `cloudformation:DescribeStacks`).
--callers (AWS only) also runs a CloudWatch Logs Insights query over the function's
log group (`logs:StartQuery`, `logs:GetQueryResults`) for the listed fingerprints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TextIO

from botocore.exceptions import ClientError
from token_vending.app_config import AppConfig, parse_app_config
from token_vending.errors import ConfigurationError, ServiceMisconfigured, StoreUnavailable
from token_vending.prewarm import not_served
from token_vending.token_store import StoredToken, TokenStore

from devstack.local_aws import TABLE_NAME as LOCAL_TABLE

from . import audit_queries, targets
from .targets import ToolError

COLUMNS = ("expires_at", "left", "minted", "app", "holder", "scope", "fingerprint", "credential_id",
           "secret_version", "renewal", "served")
SHARED = "(shared)"  # the holder of a token every allowed caller of the app is given (no ARN reads so)
LOG_GROUP_RESOURCE = "TokenVendingLogGroup"  # template.yaml's logical id of the function's log group
TABLE_OUTPUT = "TokenTableName"


def rows(entries: Iterable[StoredToken], now: float, served: Callable[[StoredToken], str] = lambda _: "?"
         ) -> list[dict[str, str]]:
    """One printable row per entry, soonest expiry first; `served` marks whether the function still serves it."""
    listed = []
    for entry in entries:
        listed.append((entry.expires_at, {
            "expires_at": _time(entry.expires_at),
            "left": _duration(entry.expires_at - now),
            "minted": _time(entry.minted_at),
            "app": entry.app,
            "holder": entry.holder or SHARED,
            "scope": entry.scope,
            "fingerprint": entry.fingerprint,
            "credential_id": entry.credential_id,
            "secret_version": entry.secret_version or "?",
            # The endpoint gave this token back unchanged: it is served until it expires.
            "renewal": "blocked" if entry.renewal_blocked else "",
            "served": served(entry),
        }))
    return [row for _, row in sorted(listed, key=lambda pair: pair[0])]


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(seconds: float) -> str:
    if seconds <= 0:
        return "expired"
    days, rest = divmod(int(seconds), 86_400)
    return f"{days}d{rest // 3600:02d}h" if days else f"{rest // 3600}h{rest % 3600 // 60:02d}m"


def print_table(printable: list[dict[str, str]], out: TextIO) -> None:
    widths = {name: max(len(name), *(len(row[name]) for row in printable)) for name in COLUMNS}
    out.write("  ".join(name.upper().ljust(widths[name]) for name in COLUMNS).rstrip() + "\n")
    for row in printable:
        out.write("  ".join(row[name].ljust(widths[name]) for name in COLUMNS).rstrip() + "\n")


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.list_tokens", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", default=os.environ.get("TOKEN_TABLE_NAME"),
                        help="the token table (default: $TOKEN_TABLE_NAME, else the stack's TokenTableName output)")
    parser.add_argument("--stack", help=f"the deployed stack (default: {targets.DEFAULT_STACK})")
    parser.add_argument("--region", default=None, help="AWS region (default: $AWS_REGION, else your configuration)")
    parser.add_argument("--profile", help="AWS profile (default: botocore's credential chain)")
    parser.add_argument("--local", action="store_true", help="the local stack of a running `make serve`")
    parser.add_argument("--app", help="only this app's tokens")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    parser.add_argument("--callers", action="store_true",
                        help="also show which callers received each listed token (AWS only: Logs Insights)")
    parser.add_argument("--since", default="7d", help="the period --callers searches: 30m, 12h, 7d, 2w (default 7d)")
    parser.add_argument("--log-group", help="the function's log group (default: the stack's TokenVendingLogGroup)")
    args = parser.parse_args(argv)
    try:
        return _run(args, out or sys.stdout)
    except ToolError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, out: TextIO) -> int:
    if args.callers and args.local:
        raise ToolError("--callers reads the function's audit log in CloudWatch Logs: AWS only (the local stack's "
                        "audit lines go to make serve's terminal)")
    try:
        since_seconds = audit_queries.parse_since(args.since)
    except ValueError as error:
        raise ToolError(str(error)) from None
    target = targets.resolve(argparse.Namespace(local=args.local, region=args.region, profile=args.profile,
                                                prefix=os.environ.get("SECRET_PREFIX"), stack=args.stack))
    table = LOCAL_TABLE if args.local else args.table or targets.stack_output(target, args.stack, TABLE_OUTPUT)
    dynamodb = target.client("dynamodb")
    store = TokenStore(lambda: dynamodb, lambda: None, table, kms_key_id="")
    try:
        entries = list(store.entries())
    except ServiceMisconfigured as error:  # the error code only: never a message that may quote the request
        raise ToolError(f"cannot read table {table}: {error.error_code}") from None
    except StoreUnavailable as error:  # its text is the error code
        raise ToolError(f"cannot read table {table}: {error}") from None
    where = targets.make_variables(argparse.Namespace(local=args.local, stack=args.stack, prefix=None,
                                                      region=args.region, profile=args.profile))
    printable = rows(entries, time.time(), ServedMarks(target, os.environ.get("TOKEN_URL"), where).mark)
    if args.app:
        printable = [row for row in printable if row["app"] == args.app]
    if args.json:
        for row in printable:
            out.write(json.dumps(row) + "\n")
    elif printable:
        print_table(printable, out)
    else:
        out.write(f"no cached tokens in {table}{f' for app {args.app}' if args.app else ''}\n")
    if args.callers and printable:
        _print_callers(target, args, [row["fingerprint"] for row in printable], since_seconds, out)
    return 0


class ServedMarks:
    """Whether the function still serves an entry, from its app's current secret (read once per app)."""

    def __init__(self, target: targets.Target, token_url: str | None, where: str = "") -> None:
        self._target = target
        self._where = where  # the make variables of the commands its notes name (` LOCAL=1`, ` STACK=...`)
        # The endpoint is part of every credential id: the function's ($TOKEN_URL), else the stack's TokenUrl.
        self._token_url = token_url if not target.local and token_url else targets.stack_token_url(target)
        self._configs: dict[str, AppConfig | str | None] = {}  # None: no secret; a string: why it is unknown
        if self._token_url is None:
            self._note(f"SERVED is ? throughout: the stack's TokenUrl cannot be read (cloudformation:DescribeStacks "
                       f"on {target.stack or targets.DEFAULT_STACK}; name yours with STACK=)")

    def mark(self, entry: StoredToken) -> str:
        config = self._config(entry.app)
        if isinstance(config, str):
            return "?"
        stale = not_served(config, entry)
        return "yes" if stale is None else f"no:{stale.value}"

    def _config(self, app: str) -> AppConfig | str | None:
        if app in self._configs:
            return self._configs[app]
        if self._token_url is None:
            found: AppConfig | str | None = "no TokenUrl"
        else:
            found = self._read(app, self._token_url)
        self._configs[app] = found
        return found

    def _read(self, app: str, token_url: str) -> AppConfig | str | None:
        name = self._target.prefix + app
        try:
            answer = self._target.client("secretsmanager").get_secret_value(SecretId=name)
        except ClientError as error:
            code = targets.code_of(error)
            if code in ("ResourceNotFoundException", "InvalidRequestException"):  # absent, or its deletion scheduled
                return None
            self._note(f"SERVED is ? for {app}: secretsmanager GetSecretValue {name}: {code}")
            return code
        try:
            return parse_app_config(app, answer.get("SecretString"), answer.get("VersionId", ""), token_url)
        except ConfigurationError:
            self._note(f"SERVED is ? for {app}: its secret is unusable (the function answers 500 for it): "
                       f"make apps ARGS=\"show {app}\"{self._where}")
            return "unusable"

    @staticmethod
    def _note(text: str) -> None:
        print(f"note: {text}", file=sys.stderr)


def _print_callers(target: targets.Target, args: argparse.Namespace, fingerprints: list[str], since_seconds: int,
                   out: TextIO) -> None:
    log_group = args.log_group or targets.stack_resource(target, args.stack, LOG_GROUP_RESOURCE)
    logs = target.client("logs")
    end = time.time()
    found: list[dict[str, str]] = []
    listed = [fingerprint for fingerprint in fingerprints if audit_queries.FINGERPRINT.fullmatch(fingerprint)]
    with targets.aws_errors("logs StartQuery/GetQueryResults"):
        for query in audit_queries.callers_queries(listed):
            try:
                found += audit_queries.run_query(logs, log_group, query, end - since_seconds, end)
            except audit_queries.QueryFailed as error:
                raise ToolError(str(error)) from None
    out.write("\n" + "\n".join(audit_queries.format_callers(listed, found, args.since)) + "\n")


if __name__ == "__main__":
    sys.exit(main())
