"""Command line: `sangoma-token get --url URL --app APP --scope "a b"` (or `python -m sangoma_token_client ...`).

`get` prints the service's answer as JSON on stdout. `report` tells the service a
token was rejected (by fingerprint, or the token itself read from stdin so it
never shows in a process list) and says on stderr what the service did with it.
Failures print `error: code: description` on stderr; a 429 or 503 adds when to
come back (`retry after N s, at HH:MM:SS UTC`) from the answer's Retry-After.

Exit status: 0 done; 1 refused or failed; 2 usage error; 3 come back later (429
or 503: busy, a mint budget spent, a report too early).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import IntEnum

import botocore.exceptions
import botocore.session

from . import REGION_VARIABLE, URL_VARIABLE
from .client import TOO_EARLY, TokenClient, fingerprint, normalize_scopes
from .errors import TokenVendingError

SCRIPT = "sangoma-token"  # the console script pyproject.toml installs


class Exit(IntEnum):
    """The exit statuses the docs list."""

    DONE = 0
    FAILED = 1  # refused (access, scope, signature, ...) or failed (unreachable, unusable answer, configuration)
    USAGE = 2  # argparse's own status for usage errors
    LATER = 3  # 429 or 503: the service asks the caller to come back (when, if it said, is printed)


COME_BACK_LATER = frozenset({429, 503})


def _parser(prog: str) -> argparse.ArgumentParser:
    # --help shows this module's docstring after its first paragraph (unless python -OO dropped it).
    details = (__doc__ or "").partition("\n\n")[2].strip()
    parser = argparse.ArgumentParser(prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Get Sangoma CX access tokens from the token vending service."
                                                 f"\n\n{details}".strip())
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get(URL_VARIABLE),
                        help=f"the service's VendingUrl (default: ${URL_VARIABLE})")
    common.add_argument("--app", required=True, help="application name")
    common.add_argument("--scope", required=True, action="append",
                        help='scopes, space-separated ("cx.agent-calls cx.queue-calls"); may repeat')
    common.add_argument("--region", default=os.environ.get(REGION_VARIABLE),
                        help=f"signing region (default: ${REGION_VARIABLE}, else from an execute-api URL, else "
                             "$AWS_REGION, else $AWS_DEFAULT_REGION or the profile's, else us-east-1 for a "
                             "plain http loopback URL such as the local gateway's)")
    common.add_argument("--profile", help="AWS profile for the credentials (default: botocore's default chain)")
    commands.add_parser("get", parents=[common], help="print a token answer as JSON")
    report = commands.add_parser("report", parents=[common], help="report a token a CX API rejected")
    which = report.add_mutually_exclusive_group(required=True)
    which.add_argument("--fingerprint", help="the 16-hex fingerprint from the token answer")
    which.add_argument("--token-stdin", action="store_true", help="read the rejected access token from stdin")
    return parser


# What the service did with a reported token (its answer's Token-Dropped header; None: it did not say).
REPORT_OUTCOMES = {
    True: "dropped; the next get fetches a new one",
    False: "not the cached token any more (it was replaced already): nothing dropped; the next get gets the "
           "current one",
    None: "dropped if it is still the token the service hands you (if not, it was replaced already); the next "
          "get fetches a new one",
}


def main(argv: Sequence[str] | None = None, prog: str = SCRIPT) -> int:
    """The `sangoma-token` console script; returns the exit status."""
    args = _parser(prog).parse_args(argv)
    if not args.url:
        print(f"error: no_url: pass --url or set {URL_VARIABLE}", file=sys.stderr)
        return Exit.USAGE
    try:
        client = TokenClient(args.url, region=args.region, session=botocore.session.Session(profile=args.profile))
        if args.command == "get":
            print(json.dumps(client.get_token(args.app, args.scope).as_dict(), indent=2))
            return Exit.DONE
        token_fingerprint = fingerprint(sys.stdin.read().strip()) if args.token_stdin else args.fingerprint
        dropped = client.report_rejected_fingerprint(args.app, args.scope, token_fingerprint)
    except TokenVendingError as error:
        print(f"error: {error.error}: {error.error_description}", file=sys.stderr)
        if args.command == "report" and error.error == TOO_EARLY:
            print("refused as too early: the token is younger than the service's minimum report age, so it is "
                  "kept; if the CX API still refuses it then, report it again", file=sys.stderr)
        if error.status in COME_BACK_LATER:
            print(_when_to_come_back(error.retry_after), file=sys.stderr)
            return Exit.LATER
        return Exit.FAILED
    except botocore.exceptions.BotoCoreError as error:  # a broken profile or credentials configuration
        print(f"error: configuration: {error}", file=sys.stderr)
        return Exit.FAILED
    reported = f"reported {token_fingerprint} for {args.app} ({' '.join(normalize_scopes(args.scope))})"
    print(f"{reported}: {REPORT_OUTCOMES[dropped]}", file=sys.stderr)
    return Exit.DONE


def _when_to_come_back(retry_after: float | None, now: datetime | None = None) -> str:
    """`retry after 480 s (8 min), at 14:08:03 UTC`: the seconds the service asked for, and the time that makes."""
    if retry_after is None:
        return "retry later (the service did not say when)"
    seconds = round(retry_after)
    at = (now or datetime.now(UTC)) + timedelta(seconds=seconds)
    minutes = f" ({seconds / 60:.0f} min)" if seconds >= 120 else ""
    return f"retry after {seconds} s{minutes}, at {at:%H:%M:%S} UTC"

