"""List the cached tokens in the token table, soonest expiry first: never the token itself.

    make tokens TABLE=<TokenTableName output>        # against AWS (your usual credentials/region)
    make tokens LOCAL=1                              # against `make serve`'s local stack
    python -m tools.list_tokens --table NAME [--region R] [--endpoint-url URL] [--json]

It reads the same metadata the scheduled pre-warm reads (TokenStore.entries):
app, scope, expiry, fingerprint (the vend answer's `fingerprint`), and which
credentials minted it (credential id and the secret version). It needs only
`dynamodb:Scan` on the table; the sealed tokens are not read, so no KMS access.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

import boto3
from token_vending.token_store import TokenStore

from devstack.stack import REGION as LOCAL_REGION
from devstack.stack import TABLE_NAME as LOCAL_TABLE

LOCAL_ENDPOINT = "http://127.0.0.1:8711"  # `make serve`'s moto server
COLUMNS = ("expires_at", "left", "app", "scope", "fingerprint", "credential_id", "secret_version", "renewal")


def rows(entries: Iterable[Mapping[str, Any]], now: float) -> list[dict[str, str]]:
    """One printable row per entry, soonest expiry first."""
    listed = []
    for entry in entries:
        try:
            expires_at = float(entry.get("expires_at", 0))
        except (TypeError, ValueError):
            expires_at = 0.0
        listed.append((expires_at, {
            "expires_at": datetime.fromtimestamp(int(expires_at), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "left": _duration(expires_at - now),
            "app": str(entry.get("app", "?")),
            "scope": str(entry.get("scope", "?")),
            "fingerprint": str(entry.get("fingerprint", "?")),
            "credential_id": str(entry.get("credential_id", "?")),
            "secret_version": str(entry.get("secret_version", "?")),
            # The endpoint gave this token back unchanged: it is served until it expires.
            "renewal": "blocked" if entry.get("renewal_blocked") is True else "",
        }))
    return [row for _, row in sorted(listed, key=lambda pair: pair[0])]


def _duration(seconds: float) -> str:
    if seconds <= 0:
        return "expired"
    days, rest = divmod(int(seconds), 86_400)
    return f"{days}d{rest // 3600:02d}h" if days else f"{rest // 3600}h{rest % 3600 // 60:02d}m"


def print_table(printable: list[dict[str, str]], out: TextIO) -> None:
    widths = {name: max([len(name), *(len(row[name]) for row in printable)]) for name in COLUMNS}
    out.write("  ".join(name.upper().ljust(widths[name]) for name in COLUMNS).rstrip() + "\n")
    for row in printable:
        out.write("  ".join(row[name].ljust(widths[name]) for name in COLUMNS).rstrip() + "\n")


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.list_tokens", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", default=os.environ.get("TOKEN_TABLE_NAME"),
                        help="the token table (default: $TOKEN_TABLE_NAME)")
    parser.add_argument("--region", default=None, help="AWS region (default: your configuration)")
    parser.add_argument("--endpoint-url", default=None, help="DynamoDB endpoint (default: AWS, or $AWS_ENDPOINT_URL)")
    parser.add_argument("--local", action="store_true", help=f"the local stack of `make serve` ({LOCAL_ENDPOINT})")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    args = parser.parse_args(argv)

    client_args: dict[str, Any] = {"region_name": args.region, "endpoint_url": args.endpoint_url}
    if args.local:
        client_args.update(region_name=LOCAL_REGION, endpoint_url=args.endpoint_url or LOCAL_ENDPOINT,
                           aws_access_key_id="testing", aws_secret_access_key="testing")  # noqa: S106 - moto's
        args.table = args.table or LOCAL_TABLE
    if not args.table:
        parser.error("name the table: --table NAME (the stack's TokenTableName output) or $TOKEN_TABLE_NAME")
    dynamodb = boto3.client("dynamodb", **client_args)
    store = TokenStore(lambda: dynamodb, lambda: None, args.table, kms_key_id="")
    try:
        printable = rows(store.entries(), time.time())
    except Exception as error:  # StoreUnavailable: the message names only the error code
        print(f"cannot read table {args.table}: {error}", file=sys.stderr)
        return 1
    if args.json:
        for row in printable:
            out.write(json.dumps(row) + "\n")
    else:
        print_table(printable, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
