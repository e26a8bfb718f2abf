"""What a child process needs to look like a Lambda container against the local stack.

Only the standard library here: cold-start children import this before their clock starts.
"""

from __future__ import annotations

import copy
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CALLER_ROLE = "arn:aws:iam::111122223333:role/billing-service"
CALLER_SESSION = "arn:aws:sts::111122223333:assumed-role/billing-service/billing-session"
ACCOUNT = "111122223333"  # of the callers above; an app that allows it admits every role of the account


@cache
def _template_event() -> dict[str, Any]:
    return json.loads((ROOT / "events" / "vend.json").read_text())  # type: ignore[no-any-return]


def vend_event(app: str, scope: str, caller: str = CALLER_SESSION) -> dict[str, Any]:
    """GET /apps/{app}/token?scope=... from `caller` as API Gateway sends it (built from events/vend.json)."""
    event = copy.deepcopy(_template_event())
    path = f"/apps/{app}/token"
    event.update(path=path, pathParameters={"app": app}, queryStringParameters={"scope": scope},
                 multiValueQueryStringParameters={"scope": [scope]})
    event["requestContext"].update(path="/v1" + path)
    event["requestContext"]["identity"]["userArn"] = caller
    return event


# The benchmark mints hundreds of tokens for one app, most for one caller, within minutes; the hourly mint
# budgets, the app's and each caller's, are not what it measures (tests do), so they are lifted for the
# function the benchmark runs.
BENCH_SETTINGS = {"MAX_MINTS_PER_APP_PER_HOUR": "1000000", "MAX_MINTS_PER_CALLER_PER_HOUR": "1000000"}


def bench_stack_env(stack_env: dict[str, str]) -> dict[str, str]:
    return {**stack_env, **BENCH_SETTINGS}


def function_env(stack_env: dict[str, str]) -> dict[str, str]:
    """The function's environment against the local stack, plus what Lambda itself sets.

    LAMBDA_TASK_ROOT matters: outside Lambda the X-Ray SDK (loaded by Powertools' Tracer)
    builds X-Ray clients for centralized sampling at import, about 100 ms that Lambda never pays.
    Tracing stays disabled (POWERTOOLS_TRACE_DISABLED, from the stack): there is no X-Ray daemon here.
    """
    env = {**os.environ, **bench_stack_env(stack_env)}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT / "functions"), str(ROOT)]),
        LAMBDA_TASK_ROOT=str(ROOT / "functions"),
        AWS_LAMBDA_FUNCTION_NAME="TokenVendingFunction",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
        POWERTOOLS_LOG_LEVEL="INFO",  # what template.yaml sets: the audit line is part of a vend's cost
    )
    return env
