"""The fair baseline: a minimal Powertools REST handler that answers a constant.

Same decorators and the same Logger/Tracer/Metrics setup as token_vending.app, so
the warm-hit ratio measures what the vend itself adds on top of Powertools.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

SERVICE = "bench-baseline"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
BODY = json.dumps({"access_token": "constant", "token_type": "bearer", "scope": "cx.agent-calls",
                   "expires_in": 3600, "expires_at": "2030-01-01T00:00:00Z", "fingerprint": "0" * 16})

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace="BenchBaseline", service=SERVICE)
api = APIGatewayRestResolver()


@api.get("/apps/<app>/token")
def get_token(app: str) -> Response:
    return Response(status_code=200, content_type="application/json", body=BODY, headers=NO_STORE)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return api.resolve(event, context)


# The same minimal handler, plus the observability every vend carries: one audit log line
# and two EMF metrics. The distance between this and the vend is the vend's own work.
observed_api = APIGatewayRestResolver()


@observed_api.get("/apps/<app>/token")
def observed_get_token(app: str) -> Response:
    logger.info("vend", extra={"audit": True, "caller": "arn:aws:sts::111122223333:assumed-role/r/s", "app": app,
                               "scope": "cx.agent-calls cx.queue-calls", "source": "memory",
                               "fingerprint": "0" * 16, "expires_at": "2030-01-01T00:00:00Z"})
    metrics.add_metric(name="Vend_ok", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="CacheTier_memory", unit=MetricUnit.Count, value=1)
    return Response(status_code=200, content_type="application/json", body=BODY, headers=NO_STORE)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def observed_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return observed_api.resolve(event, context)
