"""Command line: `sangoma-token get --url URL --app APP --scope "a b"` (or `python -m sangoma_token_client ...`).

`get` prints the service's answer as JSON on stdout. `report` tells the service a
token was rejected (by fingerprint, or the token itself read from stdin so it
never shows in a process list). Failures print `error: code: description` on
stderr and exit 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import botocore.exceptions
import botocore.session

from . import REGION_VARIABLE, URL_VARIABLE
from .client import TokenClient
from .errors import TokenVendingError

SCRIPT = "sangoma-token"  # the console script pyproject.toml installs


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


def main(argv: Sequence[str] | None = None, prog: str = SCRIPT) -> int:
    """The `sangoma-token` console script; returns the exit status."""
    args = _parser(prog).parse_args(argv)
    if not args.url:
        print(f"error: no_url: pass --url or set {URL_VARIABLE}", file=sys.stderr)
        return 2
    try:
        client = TokenClient(args.url, region=args.region, session=botocore.session.Session(profile=args.profile))
        if args.command == "get":
            print(json.dumps(client.get_token(args.app, args.scope).as_dict(), indent=2))
        elif args.token_stdin:
            client.report_rejected(args.app, args.scope, sys.stdin.read().strip())
        else:
            client.report_rejected_fingerprint(args.app, args.scope, args.fingerprint)
    except TokenVendingError as error:
        print(f"error: {error.error}: {error.error_description}", file=sys.stderr)
        return 1
    except botocore.exceptions.BotoCoreError as error:  # a broken profile or credentials configuration
        print(f"error: configuration: {error}", file=sys.stderr)
        return 1
    return 0

