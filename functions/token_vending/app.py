"""Lambda entry: routes API Gateway and EventBridge events and maps errors to HTTP answers.

The work happens in vending.py (tokens) and prewarm.py (the schedule).
"""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from . import container, prewarm
from .errors import ConfigurationError, InvalidRequest, VendingError
from .observability import logger, metrics, record_invalidation, record_vend, tracer
from .request_input import parse_fingerprint, parse_token_request

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1: token answers are never cached

api = APIGatewayRestResolver(strip_prefixes=["/v1"])  # the stage, should a path carry it


def _scope_values() -> list[str]:
    event = api.current_event
    return list(event.multi_value_query_string_parameters.get("scope") or []) or \
        [value for value in [event.query_string_parameters.get("scope")] if value is not None]


def _caller_arn() -> str | None:
    """The IAM identity API Gateway authenticated; absent pieces mean no identity (403), not a crash."""
    context = api.current_event.raw_event.get("requestContext") or {}
    user_arn = (context.get("identity") or {}).get("userArn")
    return user_arn if isinstance(user_arn, str) and user_arn else None


@api.get("/apps/<app>/token")
def get_token(app: str) -> Response[str]:
    request = parse_token_request(app, _scope_values())
    caller = _caller_arn()
    vended = container.current().vendor.vend(request, caller)
    token = vended.token
    record_vend("ok", vended.source)
    logger.info("vend", extra={"audit": True, "caller": caller, "app": request.app, "scope": request.scope,
                               "source": vended.source, "fingerprint": token.fingerprint,
                               "expires_at": token.expires_at_rfc3339})
    body = {
        "access_token": token.access_token,
        "token_type": token.token_type,
        "scope": request.scope,
        "expires_in": max(0, round(token.seconds_left(time.time()))),  # a fresh token shows the endpoint's figure
        "expires_at": token.expires_at_rfc3339,
        "fingerprint": token.fingerprint,
    }
    return Response(status_code=200, content_type="application/json", body=json.dumps(body), headers=NO_STORE)


@api.delete("/apps/<app>/token")
def report_rejected_token(app: str) -> Response[str]:
    request = parse_token_request(app, _scope_values())
    token_fingerprint = parse_fingerprint(api.current_event.query_string_parameters.get("fingerprint"))
    caller = _caller_arn()
    dropped = container.current().vendor.invalidate(request, caller, token_fingerprint)
    logger.info("token reported rejected", extra={"audit": True, "caller": caller, "app": request.app,
                                                  "scope": request.scope, "fingerprint": token_fingerprint,
                                                  "dropped": dropped})
    record_invalidation(dropped)
    return Response(status_code=204, body="", headers=NO_STORE)


@api.not_found
def not_found(_: NotFoundError) -> Response[str]:
    path = api.current_event.path or ""
    if api.current_event.http_method in ("GET", "DELETE") and path.startswith("/apps/") and path.endswith("/token"):
        # Only an app name the route pattern cannot even hold ends up here.
        return _error_response(InvalidRequest("app name must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"))
    return _error_response(VendingError("no such route"), status=404, code="not_found")


@api.exception_handler(VendingError)
def vending_error(error: VendingError) -> Response[str]:
    if isinstance(error, ConfigurationError):
        logger.error("application secret is misconfigured", extra={"app": error.app, "problem": error.detail})
    return _error_response(error)


@api.exception_handler(Exception)
def unexpected_error(error: Exception) -> Response[str]:
    logger.exception("unexpected error")
    return _error_response(VendingError())


def _error_response(error: VendingError, status: int | None = None, code: str | None = None) -> Response[str]:
    code = code or error.code
    record_vend(code)
    headers = dict(NO_STORE)
    if error.retry_after:
        headers["Retry-After"] = str(error.retry_after)
    body = {"error": code, "error_description": error.description}
    return Response(status_code=status or error.status, content_type="application/json", body=json.dumps(body),
                    headers=headers)


def _is_scheduled(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.events" or "prewarm" in event


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if _is_scheduled(event):
        return prewarm.run(event, container.current(), getattr(context, "get_remaining_time_in_millis", None))
    return _with_single_value_headers(api.resolve(event, context))


def _with_single_value_headers(response: dict[str, Any]) -> dict[str, Any]:
    # Powertools answers REST events with multiValueHeaders only; API Gateway reads either, and
    # callers of the function (tests, sam local, other tools) often read `headers`.
    multi = response.get("multiValueHeaders") or {}
    response.setdefault("headers", {name: values[-1] for name, values in multi.items() if values})
    return response
