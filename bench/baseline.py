"""The baseline function of `make bench`: the function's dependencies, answering a constant.

It imports what token_vending imports from the same built layer and the runtime (boto3, requests,
and Powertools' Logger, Metrics and APIGatewayRestResolver, set up as the function sets them up),
and answers every request through the resolver with a constant body. No Tracer and no
per-invocation decorators: the distance between this and the vend is what the function adds,
its own work and its observability. The bench runs it as a function of its own (handler
`baseline.lambda_handler`) beside the built layer, under the runtime client on Python 3.13.
"""

from __future__ import annotations

import json
from typing import Any

import boto3  # noqa: F401 - imported as the function imports it: part of what a cold start loads
import requests  # noqa: F401
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

SERVICE = "bench-baseline"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
BODY = json.dumps({"access_token": "constant", "token_type": "bearer", "scope": "cx.agent-calls",
                   "expires_in": 3600, "expires_at": "2030-01-01T00:00:00Z", "fingerprint": "0" * 16})

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="BenchBaseline", service=SERVICE)
api = APIGatewayRestResolver(strip_prefixes=["/v1"])


@api.get("/apps/<app>/token")
def get_token(app: str) -> Response[str]:
    return Response(status_code=200, content_type="application/json", body=BODY, headers=NO_STORE)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return api.resolve(event, context)
