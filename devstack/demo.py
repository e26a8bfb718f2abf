"""`make demo`: vend one token through the real handler against the embedded local stack.

Starts a moto server (Secrets Manager, DynamoDB, KMS) and a stub of Sangoma's
token endpoint on 127.0.0.1, creates the table, key and a demo app secret,
invokes the handler with events/vend.json, prints the answer, and stops.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions"))

from devstack.lambda_context import LocalLambdaContext  # noqa: E402
from devstack.stack import LocalStack  # noqa: E402

DEMO_CALLER = "arn:aws:iam::111122223333:role/billing-service"  # the role whose session events/vend.json carries


def main() -> int:
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # keep the demo's output to the answer
    with LocalStack() as stack:
        os.environ.update(stack.env)
        stack.add_app("demo", allowed_callers=[DEMO_CALLER])
        print(f"local stack: moto {stack.moto.url}, token endpoint {stack.token_endpoint.url}")
        print("app secret:  sangoma/token-vending/demo (callers: billing-service role)")

        from token_vending.app import lambda_handler

        event: dict[str, Any] = json.loads((ROOT / "events" / "vend.json").read_text())
        print("\nGET /apps/demo/token?scope=cx.agent-calls%20cx.queue-calls  (first call: from the token endpoint)")
        # Each invocation writes one log line (its metrics and audit record); kept aside to show the answers.
        with contextlib.redirect_stdout(io.StringIO()) as function_log:
            first = lambda_handler(event, LocalLambdaContext())
            second = lambda_handler(event, LocalLambdaContext())
        print(f"HTTP {first['statusCode']}")
        print(json.dumps(json.loads(first["body"]), indent=2))
        body = json.loads(second["body"])
        same = body.get("fingerprint") == json.loads(first["body"]).get("fingerprint")
        print(f"\nsecond call: HTTP {second['statusCode']}, same token: {same}, "
              f"token endpoint requests so far: {stack.token_endpoint.request_count}")
        audit = [json.loads(line) for line in function_log.getvalue().splitlines() if '"audit"' in line]
        print(f"audit records: {[(record['outcome'], record['source'], record['fingerprint']) for record in audit]} "
              "(the function's log: fingerprints, never the token)")
        return 0 if first["statusCode"] == 200 and same else 1


if __name__ == "__main__":
    sys.exit(main())
