"""`make serve`: the local stack plus the SigV4 gateway, until Ctrl-C.

Ports are fixed (so curl commands and events/env.json can name them) and
overridable: `make serve GATEWAY_PORT=9000 MOTO_PORT=9001 TOKEN_STUB_PORT=9002`.
The three are checked before anything starts; a busy one ends the run at once
with one line naming it. While it runs, `.local-stack.json` says where it listens
(devstack/local_state.py), so `make tokens LOCAL=1` and `make apps ... LOCAL=1` find it.
The stub token endpoint accepts the credentials of every app whose secret is in
the local stack, so an app onboarded with `make apps ... LOCAL=1` vends too.

The function's settings (functions/token_vending/settings.py, docs/operations.md's
Configuration) are make variables too, for rehearsing what is bound to time or a budget:
`make serve SECRET_CACHE_SECONDS=1 MAX_MINTS_PER_CALLER_PER_HOUR=2 MIN_REPORT_AGE_SECONDS=0`.
They are checked before anything starts, and those that differ from the defaults are printed.
The four that say where the stack is (STACK_SETTINGS) are make serve's own.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import asdict, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

from . import local_state
from .gateway import DEMO_CREDENTIALS, ROOT, SERVICE, LocalGateway, Principal, load_credentials, quote_query_value
from .local_aws import REGION
from .stack import DEFAULT_SCOPES, LocalStack

GATEWAY_PORT, MOTO_PORT, TOKEN_STUB_PORT = 8710, 8711, 8712
DEMO_APP = "demo"
DEMO_ACCESS_KEY = "AKIALOCALDEMO0000001"
EXAMPLE_SECRET = "examples/app-secret.json"
# The caller in events/*.json, so `sam local invoke -e events/vend.json` against this stack vends too.
EVENTS_CALLER = "arn:aws:iam::111122223333:role/billing-service"
# Settings that point the function at the local stack: make serve sets them, whatever the environment says.
STACK_SETTINGS = ("TOKEN_TABLE_NAME", "TOKEN_KMS_KEY_ID", "SECRET_PREFIX", "TOKEN_URL")


def chosen_settings(env: Mapping[str, str]) -> list[str]:
    """`NAME=value (default D)` for each function setting the environment (make's command line) sets to other than
    its default; ValueError names one that is not a usable value."""
    if str(ROOT / "functions") not in sys.path:  # the function's own declaration of its settings
        sys.path.insert(0, str(ROOT / "functions"))
    from token_vending.settings import Settings

    given = {name: value for name, value in env.items() if name not in STACK_SETTINGS}
    for declared in fields(Settings):  # one at a time first, so that a refusal names the variable
        name = declared.name.upper()
        try:
            Settings.from_env({name: given.get(name, "")})
        except ValueError as error:
            raise ValueError(f"{name}={given[name]}: {error}") from None
    chosen = Settings.from_env(given)
    # The rules the function checks when a container starts, with the local stack's table, key and prefix.
    problems = replace(chosen, token_table_name="local", token_kms_key_id="local").problems()
    if problems:
        raise ValueError("; ".join(problems))
    defaults = asdict(Settings())
    return [f"{declared.name.upper()}={getattr(chosen, declared.name)} (default {defaults[declared.name]})"
            for declared in fields(Settings) if getattr(chosen, declared.name) != defaults[declared.name]]


def busy_ports(ports: dict[str, int]) -> str | None:
    """One line naming every port (by its make variable) that cannot be used, or None when all are free."""
    problems = []
    seen: dict[int, str] = {}
    for variable, port in ports.items():
        if port == 0:  # the system picks a free one
            continue
        if port in seen:
            problems.append(f"{variable} and {seen[port]} are both {port}")
        elif _in_use(port):
            problems.append(f"port {port} ({variable}) is in use")
        seen[port] = variable
    if not problems:
        return None
    taken = set(ports.values())
    choose = " ".join(f"{variable}={_free_port_after(port, taken)}" for variable, port in ports.items()
                      if any(variable in problem for problem in problems))
    return f"make serve: {'; '.join(problems)}: choose another, e.g. make serve {choose}"


def _free_port_after(port: int, taken: set[int]) -> int:
    """A port free now, near the one asked for (so the suggestion is one to paste, not a placeholder); 0 lets the
    system pick one when none of the next hundred is free."""
    for candidate in range(port + 10, min(port + 110, 65536)):
        if candidate not in taken and not _in_use(candidate):
            taken.add(candidate)
            return candidate
    return 0


def _in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the three servers do (allow_reuse_address): a port held only by closed connections is free to them.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


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

    try:
        settings = chosen_settings(os.environ)
    except (ValueError, TypeError) as error:  # a setting that is not a usable value: nothing starts
        print(f"make serve: {error}", file=sys.stderr)
        return 1
    ignored = [name for name in STACK_SETTINGS if os.environ.get(name, "").strip()]

    try:
        claimed = local_state.claim()  # held until this process ends: the state file is this run's
    except local_state.AlreadyRunning as running:
        print(running, file=sys.stderr)
        return 1

    # Before anything starts: a busy port would otherwise be a traceback, or (moto's) a wait without end.
    busy = busy_ports({"GATEWAY_PORT": args.gateway_port, "MOTO_PORT": args.moto_port,
                       "TOKEN_STUB_PORT": args.token_port})
    if busy:
        print(busy, file=sys.stderr)
        return 1

    principals = load_credentials(args.credentials)
    demo = principals.get(DEMO_ACCESS_KEY)
    allowed = args.allow or ([demo.principal_arn, EVENTS_CALLER] if demo
                              else sorted({p.principal_arn for p in principals.values()}))

    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    try:
        stack = LocalStack(moto_port=args.moto_port, token_port=args.token_port)
    except OSError as error:  # a port taken between the check and the start
        print(f"make serve: cannot start: {error}", file=sys.stderr)
        return 1
    try:
        stack.start()
        os.environ.update(stack.env)  # the handler runs in this process, against this stack
        stack.add_app(DEMO_APP, allowed_callers=allowed)
        stack.accept_every_app()
        with LocalGateway(principals, port=args.gateway_port, quiet=False) as gateway:
            state = local_state.LocalState(moto_port=_port(stack.moto.url), token_port=_port(stack.token_endpoint.url),
                                           gateway_port=_port(gateway.url), region=REGION, pid=os.getpid())
            written = local_state.write(state)
            try:
                _print_instructions(state, allowed, demo, stack.token_endpoint.url, settings, ignored)
                while not stopped.wait(0.5):  # a timed wait lets the signal handler run promptly
                    pass
            finally:
                local_state.remove(state.pid, written)
    except OSError as error:  # a port taken between the check and the start
        print(f"make serve: cannot start: {error}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
    print("\nstopped", file=sys.stderr)
    claimed.close()
    return 0


def _port(url: str) -> int:
    return int(urlsplit(url).port or 0)


def _print_instructions(state: local_state.LocalState, allowed: list[str], demo: Principal | None,
                        token_url: str, settings: list[str], ignored: list[str]) -> None:
    url = state.gateway_url
    scope = " ".join(DEFAULT_SCOPES)
    encoded_url = f"{url}/apps/{DEMO_APP}/token?scope={quote_query_value(scope)}"
    plain_url = f"{url}/apps/{DEMO_APP}/token?scope={scope}"
    # The demo key is a committed fake that works only here; a secret from another file is never printed.
    key, secret = (demo.access_key_id, demo.secret_access_key) if demo else ("KEY", "SECRET")
    local = " LOCAL=1"
    print(f"""
Local vending API on {url}  (SigV4: region {REGION}, service {SERVICE})
  moto (Secrets Manager, DynamoDB, KMS): {state.moto_url}
  stub Sangoma token endpoint:           {token_url}  (accepts every app in the local stack)
  app {DEMO_APP!r}: scopes {scope!r}, allowed callers {allowed}
  function settings: {", ".join(settings) or "the defaults (make serve NAME=value changes one: docs/operations.md)"}{
      "" if not ignored else f"; make serve sets {', '.join(ignored)} itself"}

Get a token (in another terminal):

  curl --aws-sigv4 "aws:amz:{REGION}:{SERVICE}" --user {shlex.quote(f"{key}:{secret}")} \\
    {shlex.quote(encoded_url)}

  .venv/bin/awscurl --service {SERVICE} --region {REGION} \\
    --access_key {key} --secret_key {shlex.quote(secret)} \\
    {shlex.quote(plain_url)}

  AWS_ACCESS_KEY_ID={key} AWS_SECRET_ACCESS_KEY={shlex.quote(secret)} \\
    .venv/bin/python -m sangoma_token_client get \\
    --url {url} --region {REGION} --app {DEMO_APP} --scope {shlex.quote(scope)}

Onboard an app of your own and vend its token:

  make apps ARGS="put billing {EXAMPLE_SECRET}"{local}
  AWS_ACCESS_KEY_ID={key} AWS_SECRET_ACCESS_KEY={shlex.quote(secret)} \\
    make smoke URL={url} APP=billing SCOPE=cx.agent-calls

List the cached tokens (never the tokens themselves):

  make tokens{local}

Ctrl-C stops everything.
""", flush=True)


if __name__ == "__main__":
    sys.exit(main())
