"""Lambda entry: routes API Gateway and EventBridge events and maps errors to HTTP answers.

The work happens in vending.py (tokens) and prewarm.py (the schedule). Every
answer of the token routes, refusals included, leaves one audit record: the
caller, the app, the scope, the outcome (`ok` or the error code) and, for a
token, its fingerprint. It travels in the invocation's one EMF line
(observability.py) with the invocation's metrics.
"""

from __future__ import annotations

import json
import re
from contextvars import ContextVar
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.typing import LambdaContext

from . import container, snapstart
from .errors import ConfigurationError, InvalidRequest, VendingError
from .observability import (
    audit_record,
    logger,
    record_invalidation,
    record_vend,
    start_invocation,
    tracer,
    write_invocation_line,
)
from .request_input import APP_NAME_RULE, parse_fingerprint, parse_token_request

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1: token answers are never cached
TOKEN_PATH = re.compile(r"^(?:/v1)?/apps/(?P<app>.*)/token$")
AUDITED_ROUTES = {"GET": "vend", "DELETE": "report"}
MAX_AUDITED_INPUT = 256  # what a caller sent is audited as sent, up to this many characters

api = APIGatewayRestResolver(strip_prefixes=["/v1"])  # the stage, should a path carry it
snapstart.register()

# What the answer being built adds to its audit record (outcome, status, normalized scope, token).
_answer: ContextVar[dict[str, Any]] = ContextVar("answer")


def _scope_values(event: dict[str, Any]) -> list[str]:
    multi = (event.get("multiValueQueryStringParameters") or {}).get("scope")
    if multi:
        return list(multi)
    single = (event.get("queryStringParameters") or {}).get("scope")
    return [single] if single is not None else []


def _caller_arn(event: dict[str, Any]) -> str | None:
    """The IAM identity API Gateway authenticated; absent pieces mean no identity (403), not a crash."""
    context = event.get("requestContext") or {}
    user_arn = (context.get("identity") or {}).get("userArn")
    return user_arn if isinstance(user_arn, str) and user_arn else None


@api.get("/apps/<app>/token")
def get_token(app: str) -> Response[str]:
    event = api.current_event.raw_event
    request = parse_token_request(app, _scope_values(event))
    caller = _caller_arn(event)
    vended = container.current().vendor.vend(request, caller)
    token = vended.token
    record_vend("ok", vended.source)
    _answer.get().update(outcome="ok", status=200, caller=caller, app=request.app, scope=request.scope,
                         source=vended.source, fingerprint=token.fingerprint, expires_at=token.expires_at_rfc3339)
    # {access_token, token_type, scope, expires_in, expires_at, fingerprint}; scope is the request's, normalized.
    return Response(status_code=200, content_type="application/json", body=token.answer(vended.expires_in),
                    headers=NO_STORE)


@api.delete("/apps/<app>/token")
def report_rejected_token(app: str) -> Response[str]:
    event = api.current_event.raw_event
    request = parse_token_request(app, _scope_values(event))
    token_fingerprint = parse_fingerprint((event.get("queryStringParameters") or {}).get("fingerprint"))
    caller = _caller_arn(event)
    dropped = container.current().vendor.invalidate(request, caller, token_fingerprint)
    record_invalidation(dropped)
    _answer.get().update(outcome="ok", status=204, caller=caller, app=request.app, scope=request.scope,
                         fingerprint=token_fingerprint, dropped=dropped)
    return Response(status_code=204, body="", headers=NO_STORE)


@api.not_found
def not_found(_: NotFoundError) -> Response[str]:
    path = api.current_event.path or ""
    if api.current_event.http_method in ("GET", "DELETE") and path.startswith("/apps/") and path.endswith("/token"):
        # Only an app name the route pattern cannot even hold ends up here.
        return _error_response(InvalidRequest(APP_NAME_RULE))
    return _error_response(VendingError("no such route"), status=404, code="not_found")


@api.exception_handler(VendingError)
def vending_error(error: VendingError) -> Response[str]:
    # An app's secret is logged here; a refused TOKEN_URL is logged once per container where it is found.
    if isinstance(error, ConfigurationError) and error.app is not None:
        logger.error("application secret is misconfigured", extra={"app": error.app, "problem": error.detail})
    return _error_response(error)


@api.exception_handler(Exception)
def unexpected_error(error: Exception) -> Response[str]:
    logger.exception("unexpected error")
    return _error_response(VendingError())


def _error_response(error: VendingError, status: int | None = None, code: str | None = None) -> Response[str]:
    code = code or error.code
    status = status or error.status
    record_vend(code)
    _answer.get().update(outcome=code, status=status)
    headers = dict(NO_STORE)
    if error.retry_after:
        headers["Retry-After"] = str(error.retry_after)
    body = {"error": code, "error_description": error.description}
    return Response(status_code=status, content_type="application/json", body=json.dumps(body), headers=headers)


def _is_scheduled(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.events" or "prewarm" in event


@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request_context = event.get("requestContext") or {}
    start_invocation(getattr(context, "aws_request_id", None), request_context.get("requestId"))
    audited = _audited_route(event)
    answer: dict[str, Any] = {}
    _answer.set(answer)
    try:
        if _is_scheduled(event):
            from . import prewarm  # only scheduled runs need it

            return prewarm.run(event, container.current(), getattr(context, "get_remaining_time_in_millis", None))
        return _with_single_value_headers(api.resolve(event, context))
    finally:
        write_invocation_line(_audit(event, audited, answer) if audited else None)


def _audited_route(event: dict[str, Any]) -> str | None:
    """`vend` or `report` for a request to the token resource, else None."""
    route = AUDITED_ROUTES.get(event.get("httpMethod") or "")
    return route if route and TOKEN_PATH.match(event.get("path") or "") else None


def _audit(event: dict[str, Any], route: str, answer: dict[str, Any]) -> dict[str, Any]:
    """The audit record: the request as sent, overlaid with what the answer established."""
    if answer.get("outcome") == "ok":  # the route answered, and recorded every field itself
        return audit_record(route, answer.pop("outcome"), answer.pop("status"), answer)
    raw_app = (event.get("pathParameters") or {}).get("app")
    if raw_app is None and (match := TOKEN_PATH.match(event.get("path") or "")):
        raw_app = match.group("app")
    fields: dict[str, Any] = {
        "caller": _caller_arn(event),
        "app": str(raw_app)[:MAX_AUDITED_INPUT] if raw_app is not None else None,
        "scope": " ".join(_scope_values(event))[:MAX_AUDITED_INPUT],
    }
    reported = (event.get("queryStringParameters") or {}).get("fingerprint")
    if route == "report" and reported is not None:
        fields["fingerprint"] = str(reported)[:MAX_AUDITED_INPUT]
    fields.update(answer)
    return audit_record(route, fields.pop("outcome", "internal_error"), fields.pop("status", 500), fields)


def _with_single_value_headers(response: dict[str, Any]) -> dict[str, Any]:
    # Powertools answers REST events with multiValueHeaders only; API Gateway reads either, and
    # callers of the function (tests, sam local, other tools) often read `headers`.
    multi = response.get("multiValueHeaders") or {}
    response.setdefault("headers", {name: values[-1] for name, values in multi.items() if values})
    return response
