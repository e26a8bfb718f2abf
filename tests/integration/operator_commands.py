"""The operator commands README.md and docs/*.md show, as the tests run them.

The README's deploying section and docs/operations.md's onboarding, local, smoke-test and
audit sections show these lines; tests run every one that can run offline (LOCAL_FLOW
against `make serve`, AWS_FLOW against the moto server standing in for an account), and
tests/unit/test_readme_commands.py checks that no document shows an operator command
outside these lists. Commands are written with the
default gateway URL; render() puts a test's own port in.
"""

from __future__ import annotations

import os
import re

DEFAULT_GATEWAY = "http://127.0.0.1:8710"
DEMO_KEYS = ("AWS_ACCESS_KEY_ID=AKIALOCALDEMO0000001 "
             "AWS_SECRET_ACCESS_KEY=local-demo-secret-not-a-real-aws-key")
LOCAL_CALLER = "arn:aws:iam::111122223333:user/local-demo-caller"  # the demo key's principal (make serve)
PROD_STACK = "sangoma-token-vending-prod"

# docs/operations.md, "Trying your own app locally": with `make serve` running (tests/integration/test_serve.py).
LOCAL_FLOW = [
    'make apps ARGS="validate examples/app-secret.json"',
    'make apps ARGS="put billing examples/app-secret.json" LOCAL=1',
    'make apps ARGS="list" LOCAL=1',
    'make apps ARGS="show billing" LOCAL=1',
    f'make apps ARGS="check billing --caller {LOCAL_CALLER} --scope cx.agent-calls" LOCAL=1',
    f"{DEMO_KEYS} make smoke URL={DEFAULT_GATEWAY} APP=billing SCOPE=cx.agent-calls",
    f"{DEMO_KEYS} .venv/bin/python -m sangoma_token_client get --url {DEFAULT_GATEWAY} --app billing "
    "--scope cx.agent-calls",
    "make tokens LOCAL=1",
    'make apps ARGS="remove billing" LOCAL=1',
]

# docs/operations.md, "Rehearsing a mode switch and a spent budget": each flow against `make serve` started with the
# settings before it (tests/integration/test_serve_rehearsals.py).
LOCAL_SMOKE = f"{DEMO_KEYS} make smoke URL={DEFAULT_GATEWAY}"
MODE_SWITCH_SERVE = "make serve SECRET_CACHE_SECONDS=1"
MODE_SWITCH_FLOW = [
    'make apps ARGS="put billing examples/app-secret.json" LOCAL=1',
    f"{LOCAL_SMOKE} APP=billing SCOPE=cx.agent-calls",
    'make apps ARGS="put billing examples/app-secret-shared.json" LOCAL=1',
    "sleep 2",
    f"{LOCAL_SMOKE} APP=billing SCOPE=cx.agent-calls",
    "make tokens LOCAL=1 APP=billing",
]
CALLER_BUDGET_SERVE = "make serve MAX_MINTS_PER_CALLER_PER_HOUR=2"
CALLER_BUDGET_FLOW = [
    f"{LOCAL_SMOKE} APP=demo SCOPE=cx.agent-calls",
    f"{LOCAL_SMOKE} APP=demo SCOPE=cx.queue-calls",
    f'{LOCAL_SMOKE} APP=demo SCOPE="cx.agent-calls cx.queue-calls"',
    "make tokens LOCAL=1 APP=demo",
]

# docs/operations.md, "Onboarding an app" and "Who got which token" (and the README's "Deploying"), in an account
# (tests/integration/test_operator_readme.py runs them against moto, with AWS_ENDPOINT_URL, HOME and URL set by it).
AWS_FLOW = [
    'make apps ARGS="validate ~/billing-secret.json"',
    f'make apps ARGS="put billing ~/billing-secret.json" STACK={PROD_STACK}',
    f'make apps ARGS="list" STACK={PROD_STACK}',
    f'make apps ARGS="show billing" STACK={PROD_STACK}',
    'make apps ARGS="check billing --caller arn:aws:sts::111122223333:assumed-role/billing-service/any-session '
    f"--scope 'cx.agent-calls cx.queue-calls'\" STACK={PROD_STACK}",
    'make smoke URL=$URL APP=billing SCOPE="cx.agent-calls cx.queue-calls"',
    f"make tokens STACK={PROD_STACK}",
    f'make apps ARGS="remove billing" STACK={PROD_STACK}',
    f'make apps ARGS="restore billing" STACK={PROD_STACK}',
]

# Shown in docs/operations.md but needing a real account (Logs Insights, the aws CLI): their offline parts are
# unit-tested (tests/unit/test_audit_queries.py).
AWS_ONLY = [
    f"make tokens STACK={PROD_STACK} CALLERS=1 SINCE=7d",
    f"make tokens STACK={PROD_STACK} APP=billing CALLERS=1 SINCE=30d",
    "make tokens TABLE=$(aws cloudformation describe-stacks --stack-name STACK "
    "--query \"Stacks[0].Outputs[?OutputKey=='TokenTableName'].OutputValue\" --output text)",
    "PYTHONPATH=functions .venv/bin/python -m tools.list_tokens --table NAME --region eu-west-1 --json",
]


def render(command: str, gateway_url: str) -> str:
    return command.replace(DEFAULT_GATEWAY, gateway_url)


def shell_env(**extra: str) -> dict[str, str]:
    """An operator's shell: none of the test run's AWS or function settings or make state (a make inside `make test`
    would otherwise announce the directories it enters), nothing read from ~/.aws."""
    inherited = {"MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES",
                 # the function's settings the test process carries: make would take SECRET_PREFIX as its own
                 # variable, and the tools TOKEN_TABLE_NAME as their table, instead of finding them
                 "SECRET_PREFIX", "TOKEN_TABLE_NAME"}
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_") and name not in inherited}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, PYTHONUNBUFFERED="1", **extra)
    return env


# A make command a tool prints for the operator to paste (with the keys it names before it): up to the `;`, `)`,
# backquote or line end around it.
PRINTED_COMMAND = re.compile(r"(?:AWS_ACCESS_KEY_ID=\S+ AWS_SECRET_ACCESS_KEY=\S+ )?make (?:apps|tokens|smoke) "
                             r"[^;)`\n]*[^;)`\n\s]")


def printed_commands(text: str) -> list[str]:
    """The make commands in a tool's output, each as the operator would paste it."""
    return PRINTED_COMMAND.findall(text)
