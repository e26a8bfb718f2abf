"""Smoke test: vend one token with your own AWS credentials, as a service would, and say what failed.

    make smoke URL=<VendingUrl> APP=billing SCOPE="cx.agent-calls cx.queue-calls" [REGION=us-east-1] [FUNCTION=f]
    python -m tools.smoke --url URL --app APP --scope SCOPE [--region R] [--profile P] [--function F]

It calls the service through the client package (sangoma_token_client) with botocore's
credential chain, once (no retries, so a 503 shows as it is), prints the answer without
the token, and on failure says in words what to look at. Then it compares the version callers
run (the alias `live`) with the function's $LATEST (tools/live_alias.py): a deploy that did not
publish a version leaves callers on the old one. The function is found from the URL through
API Gateway, or named with --function. Exit status 0, or 1 if the vend failed or `live` lags.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import botocore.exceptions
import botocore.session
from sangoma_token_client import TokenClient, TokenVendingError

from .live_alias import NEEDS, compare, split_qualifier, target_from_url

# What each failure means for the operator, keyed by the error the client reports: the service's
# code, API Gateway's error type, or the client's own. {app}, {region}, {url} are filled in, and {mode}: the
# make variables that point the `make apps` commands it names where this run pointed (see make_variables).
ADVICE = {
    # API Gateway refused the request before the function saw it.
    "MissingAuthenticationTokenException":
        "API Gateway found no signature, or no such route: use the stack's VendingUrl output as it is (it ends in "
        "/v1) and sign the request (the client does; a plain curl does not)",
    "InvalidSignatureException":
        "API Gateway refused the signature: sign for the API's region ({region} was used; an execute-api URL names "
        "its region), and check the secret access key and this machine's clock",
    "IncompleteSignatureException":
        "API Gateway found a malformed signature: sign with SigV4 for service execute-api",
    "UnrecognizedClientException":
        "API Gateway does not know these credentials: they are wrong, or temporary ones have expired "
        "(refresh them: aws sso login, or assume the role again)",
    "ExpiredTokenException":
        "your temporary credentials have expired: refresh them (aws sso login, or assume the role again)",
    "AccessDeniedException":
        "the API's resource policy or your IAM policy refuses this principal: the API admits principals of the "
        "deploying account (or of the OrganizationId the stack names), and a principal of another account also "
        "needs execute-api:Invoke on the API in its own IAM policy",
    "ForbiddenException":
        "API Gateway refused the request (a private API reached from outside its VPC endpoint?)",
    "TooManyRequestsException":
        "API Gateway throttled the request (the stage's ApiThrottlingRateLimit/BurstLimit): try again shortly",
    "http_429": "throttled: try again shortly",
    # The function's answers.
    "access_denied":
        "the app's allowed_callers does not list your principal (or the request carried no IAM identity): "
        "{check} add yours to allowed_callers in the app's secret document and store it again with put, as "
        "when onboarding",
    "invalid_scope":
        "a scope is not in the app's allowed_scopes: `make apps ARGS=\"show {app}\"{mode}` lists them",
    "unknown_app":
        "there is no secret for {app} under the stack's prefix (a typo, another stack or prefix, or its deletion "
        "is scheduled): `make apps ARGS=\"list\"{mode}`",
    "invalid_request":
        "the app name or a scope is malformed (app: letters, digits, '_' and '-', up to 64; scopes: "
        "space-separated tokens)",
    "upstream_error":
        "Sangoma's token endpoint rejected the app's client credentials or answered something unusable: check "
        "client_id and client_secret in the app's secret (store new ones with a put, as when onboarding); "
        "the UpstreamFailures query shows what the endpoint answered",
    "upstream_unavailable":
        "Sangoma's token endpoint is unreachable, slow or asking us to wait: try again after Retry-After; the "
        "UpstreamFailures query shows which",
    "dependency_unavailable":
        "Secrets Manager could not be read: try again after Retry-After; if it lasts, check the function's "
        "log and the account's Secrets Manager health",
    "mint_limit_reached":
        "the service limits how many tokens it mints for this app and has reached that limit: wait for "
        "Retry-After, or ask why so many new tokens are needed",
    "slow_down":
        "the service asks callers of this app to slow down: wait for Retry-After before trying again",
    "internal_error":
        "the function failed; most often the app's secret is malformed (check it: "
        "`make apps ARGS=\"show {app}\"{mode}`; the function's log line 'application secret is misconfigured' "
        "names the field)",
    "not_found": "no such route: the URL must be the stack's VendingUrl output (it ends in /v1)",
    # The client's own.
    "unavailable":
        "the service could not be reached at {url}: check the URL, DNS and the network path (a private API is "
        "reachable only through its VPC endpoint)",
    "invalid_response": "something answered that is not the vending service: check the URL",
    "no_credentials":
        "no AWS credentials found: set AWS_PROFILE (or --profile), or export AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)",
    "no_region": "no signing region: pass REGION=... (--region), or set AWS_REGION or AWS_DEFAULT_REGION",
}
# Against make serve's gateway (is_local), where the advice above would send the operator elsewhere.
LOCAL_ADVICE = {
    "no_credentials":
        "make serve's gateway takes the fake keys of devstack/local-credentials.json; with the demo caller's: "
        "`{keys} make smoke URL={url} APP={quoted_app} SCOPE={quoted_scope}`",
}
RETRY_HINT = {503, 429}


def local_keys() -> str:
    """The environment that signs as make serve's demo caller: a committed fake key that works only there."""
    from devstack.gateway import load_credentials
    from devstack.serve import DEMO_ACCESS_KEY

    secret = load_credentials()[DEMO_ACCESS_KEY].secret_access_key
    return f"AWS_ACCESS_KEY_ID={DEMO_ACCESS_KEY} AWS_SECRET_ACCESS_KEY={shlex.quote(secret)}"


def make_variables(url: str, region: str | None, profile: str | None) -> str:
    """` LOCAL=1` against make serve's gateway (the client takes plain http only to loopback), else the REGION and
    PROFILE this run was given: what the printed `make apps` commands need to act where this one did."""
    if is_local(url):
        return " LOCAL=1"
    return "".join(f" {name}={shlex.quote(value)}" for name, value in (("REGION", region), ("PROFILE", profile))
                   if value)


def advice(error: TokenVendingError, *, app: str, region: str, url: str, mode: str = "", scope: str = "",
           caller: str | None = None) -> str:
    """What to do, in words; a command in it works pasted (`caller`: the ARN this run called as, when known)."""
    template = (LOCAL_ADVICE if is_local(url) else {}).get(error.error) or ADVICE.get(error.error)
    if template is None:
        if error.status and error.status >= 500:
            template = "the service or API Gateway failed ({status}): try again; if it lasts, see the function's log"
        else:
            template = "unexpected answer: see the description above"
    if caller:
        check = (f"see why with `make apps ARGS=\"check {app} --caller {shlex.quote(caller)} "
                 f"--scope {shlex.quote(scope)}\"{mode}`, then")
    else:
        check = f"see who may with `make apps ARGS=\"show {app}\"{mode}`, then"
    keys = local_keys() if "{keys}" in template else ""
    return template.format(app=app, region=region, url=url, status=error.status, mode=mode, check=check, keys=keys,
                           quoted_app=shlex.quote(app), quoted_scope=shlex.quote(scope))


def is_local(url: str) -> bool:
    """make serve's gateway (the client takes plain http only to loopback)."""
    return url.lower().startswith("http://")


def check_live_alias(session: botocore.session.Session, region: str, url: str, function: str, out: TextIO) -> bool:
    """Prints whether callers run the function's current configuration; False when they do not."""
    if is_local(url) and not function:
        print("live alias: nothing to compare here: make serve runs the function from this checkout's source, "
              "without versions or an alias", file=out)
        return True
    try:
        target = (split_qualifier(function) if function else
                  target_from_url(url, session.create_client("apigateway", region_name=region)))
        if target is None:
            print(f"live alias: not checked ({url} is not an execute-api URL): name the function with "
                  "FUNCTION=<the stack's TokenVendingFunctionArn output>", file=out)
            return True
        if not target.alias:
            print(f"live alias: API Gateway invokes {target.function} itself, no alias: nothing to compare", file=out)
            return True
        version, differ = compare(session.create_client("lambda", region_name=region), target)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, LookupError) as error:
        print(f"live alias: not checked: {error} (it takes {NEEDS})", file=out)
        return True
    if differ:
        print(f"live alias: version {version} differs from $LATEST in {', '.join(differ)}", file=out)
        print(f"FAIL: callers still run version {version}: deploy with make deploy", file=out)
        return False
    print(f"OK: live runs version {version}, the function's current configuration", file=out)
    return True


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.smoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="", help="the stack's VendingUrl output")
    parser.add_argument("--app", default="", help="the app to vend for")
    parser.add_argument("--scope", default="", help='space-separated scopes ("cx.agent-calls cx.queue-calls")')
    parser.add_argument("--region", default=None,
                        help="signing region (default: the URL's, else $AWS_REGION or your configuration)")
    parser.add_argument("--profile", default=None, help="AWS profile (default: botocore's credential chain)")
    parser.add_argument("--function", default="",
                        help="the function (name or ARN, :alias optional) whose alias `live` to compare with $LATEST "
                             "(default: the one the URL's API invokes)")
    args = parser.parse_args(argv)
    out = out or sys.stdout
    if not (args.url and args.app and args.scope):
        print('usage: make smoke URL=<VendingUrl> APP=<app> SCOPE="<scopes>" [REGION=<region>] [FUNCTION=<function>]',
              file=sys.stderr)
        return 2
    try:
        session = botocore.session.Session(profile=args.profile)
        client = TokenClient(args.url, region=args.region, session=session, max_attempts=1)
        credentials = session.get_credentials()
    except botocore.exceptions.BotoCoreError as error:  # e.g. the profile does not exist
        print(f"FAIL: AWS configuration: {error}", file=out)
        return 1
    who = (f"access key {credentials.access_key[:4]}...{credentials.access_key[-4:]} ({credentials.method})"
           if credentials else "no credentials")
    print(f"GET {client.url}/apps/{args.app}/token  scope={args.scope!r}  signed for {client.region}, {who}",
          file=out)
    vended = vend(client, args.app, args.scope, make_variables(client.url, args.region, args.profile), out,
                  caller=lambda: caller_arn(session, str(client.region), client.url, credentials))
    current = check_live_alias(session, str(client.region), client.url, args.function, out)
    return 0 if vended and current else 1


def caller_arn(session: botocore.session.Session, region: str, url: str, credentials: Any) -> str | None:
    """The IAM ARN this run called as, for the advice's `make apps check` command; None when it cannot be told.
    Locally, the principal make serve's gateway maps the access key to; on AWS, STS GetCallerIdentity (which
    needs no permission)."""
    if credentials is None:
        return None
    if is_local(url):
        from devstack.gateway import load_credentials

        principal = load_credentials().get(credentials.access_key)
        return principal.principal_arn if principal else None
    try:
        return str(session.create_client("sts", region_name=region).get_caller_identity()["Arn"])
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        return None


def vend(client: TokenClient, app: str, scope: str, mode: str, out: TextIO,
         caller: Callable[[], str | None] = lambda: None) -> bool:
    """One vend, its answer printed (never the token); False if it failed. `mode`: the make variables that
    point the commands its advice names where this run pointed; `caller` tells whom it called as."""
    try:
        token = client.get_token(app, scope)
    except TokenVendingError as error:
        status = f"HTTP {error.status} " if error.status else ""
        print(f"FAIL: {status}{error.error}: {error.error_description}", file=out)
        if error.retry_after is not None and error.status in RETRY_HINT:
            print(f"      Retry-After: {error.retry_after:g} s", file=out)
        who = caller() if error.error == "access_denied" else None
        said = advice(error, app=app, region=str(client.region), url=client.url, mode=mode, scope=scope, caller=who)
        print(f"what to do: {said}", file=out)
        return False
    days = token.expires_in // 86_400
    print(f"OK: a {token.token_type} token for {app}, scope {token.scope!r}, fingerprint {token.fingerprint}, "
          f"expires {token.expires_at} ({days} days left); the token itself is not shown", file=out)
    return True


if __name__ == "__main__":
    sys.exit(main())
