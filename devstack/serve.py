"""`make serve`: the local stack plus the SigV4 gateway, until Ctrl-C.

Ports are fixed (so curl commands and events/env.json can name them) and
overridable: `make serve GATEWAY_PORT=9000 MOTO_PORT=9001 TOKEN_STUB_PORT=9002`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from .gateway import DEMO_CREDENTIALS, SERVICE, LocalGateway, Principal, load_credentials, quote_query_value
from .stack import DEFAULT_SCOPES, REGION, LocalStack

GATEWAY_PORT, MOTO_PORT, TOKEN_STUB_PORT = 8710, 8711, 8712
DEMO_APP = "demo"
DEMO_ACCESS_KEY = "AKIALOCALDEMO0000001"
# The caller in events/*.json, so `sam local invoke -e events/vend.json` against this stack vends too.
EVENTS_CALLER = "arn:aws:iam::111122223333:role/billing-service"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway-port", type=int, default=GATEWAY_PORT)
    parser.add_argument("--moto-port", type=int, default=MOTO_PORT)
    parser.add_argument("--token-port", type=int, default=TOKEN_STUB_PORT)
    parser.add_argument("--credentials", type=Path, default=DEMO_CREDENTIALS,
                        help="access keys the gateway accepts (JSON: key id -> secret_access_key, principal_arn)")
    parser.add_argument("--allow", action="append", metavar="ARN",
                        help="a caller the demo app allows (repeatable; default: the demo key's principal and the "
                             "caller of events/*.json, or every principal in --credentials)")
    args = parser.parse_args(argv)

    principals = load_credentials(args.credentials)
    demo = principals.get(DEMO_ACCESS_KEY)
    allowed = args.allow or ([demo.principal_arn, EVENTS_CALLER] if demo
                              else sorted({p.principal_arn for p in principals.values()}))

    stack = LocalStack(moto_port=args.moto_port, token_port=args.token_port).start()
    try:
        os.environ.update(stack.env)  # the handler runs in this process, against this stack
        stack.add_app(DEMO_APP, allowed_callers=allowed)
        with LocalGateway(principals, port=args.gateway_port, quiet=False) as gateway:
            _print_instructions(gateway.url, stack, allowed, demo)
            stopped = threading.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stopped.set())
            while not stopped.wait(0.5):  # a timed wait lets the signal handler run promptly
                pass
    finally:
        stack.stop()
    print("\nstopped", file=sys.stderr)
    return 0


def _print_instructions(url: str, stack: LocalStack, allowed: list[str], demo: Principal | None) -> None:
    scope = " ".join(DEFAULT_SCOPES)
    token_url = f"{url}/apps/{DEMO_APP}/token?scope={quote_query_value(scope)}"
    # The demo key is a committed fake that works only here; a secret from another file is never printed.
    key, secret = (demo.access_key_id, demo.secret_access_key) if demo else ("KEY", "SECRET")
    print(f"""
Local vending API on {url}  (SigV4: region {REGION}, service {SERVICE})
  moto (Secrets Manager, DynamoDB, KMS): {stack.moto.url}
  stub Sangoma token endpoint:           {stack.token_endpoint.url}
  app {DEMO_APP!r}: scopes {scope!r}, allowed callers {allowed}

Get a token (in another terminal):

  curl --aws-sigv4 "aws:amz:{REGION}:{SERVICE}" --user {shlex.quote(f"{key}:{secret}")} \\
    {shlex.quote(token_url)}

or with the client package:

  AWS_ACCESS_KEY_ID={key} AWS_SECRET_ACCESS_KEY={shlex.quote(secret)} \\
    PYTHONPATH=layers/client/python .venv/bin/python -m sangoma_token_client get \\
    --url {url} --region {REGION} --app {DEMO_APP} --scope {shlex.quote(scope)}

Ctrl-C stops everything.
""", flush=True)


if __name__ == "__main__":
    sys.exit(main())
