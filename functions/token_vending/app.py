"""Lambda entry: routes API Gateway and EventBridge events and maps errors to HTTP answers.

The work happens in vending.py (tokens) and prewarm.py (the schedule). Every answer of the
token routes, refusals included, completes the audit record begun from the request
(audit.py) and counts one metric for its route: `Vend_<outcome>` for GET, `Report_<outcome>`
for DELETE.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.typing import LambdaContext

from . import container, snapstart
from .audit import AuditRecord
from .errors import ConfigurationError, InvalidRequest, ServiceMisconfigured, VendingError
from .observability import logger, record_report, record_vend, start_invocation, tracer, write_invocation_line
from .request_input import APP_NAME_RULE, ApiCall, parse_fingerprint, parse_token_request

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1: token answers are never cached
DROPPED_HEADER = "Token-Dropped"  # a report's answer: "true" (dropped) or "false" (not the cached token any more)
TOKEN_RESOURCE = "/apps/{app}/token"  # noqa: S105 - the API's one resource (template.yaml), not a password

api = APIGatewayRestResolver(strip_prefixes=["/v1"])  # the stage, should a path carry it
snapstart.register()


@api.get("/apps/<app>/token")
def get_token(app: str) -> Response[str]:
    call, audit = api.context["call"], api.context["audit"]
    vendor = container.current().vendor  # first: a container whose settings cannot work answers 500, calling nothing
    request = parse_token_request(app, call.scope_values)
    vended = vendor.vend(request, call.caller)
    token = vended.token
    record_vend("ok", vended.source)
    audit.answered("ok", 200, app=request.app, scope=request.scope, holder=vended.holder, source=vended.source,
                   fingerprint=token.fingerprint, expires_at=token.expires_at_rfc3339)
    if vended.source == "upstream":  # a mint: whose budget paid for it
        audit.answered("ok", 200, charged_to=vended.charged_to, **({"prepaid": True} if vended.prepaid else {}))
    if vended.default_lifetime:
        audit.answered("ok", 200, lifetime="default")  # the endpoint did not say: DEFAULT_TOKEN_LIFETIME_SECONDS
    # {access_token, token_type, scope, expires_in, expires_at, fingerprint}; scope is the request's, normalized.
    return Response(status_code=200, content_type="application/json", body=token.answer(vended.expires_in),
                    headers=NO_STORE)


@api.delete("/apps/<app>/token")
def report_rejected_token(app: str) -> Response[str]:
    call, audit = api.context["call"], api.context["audit"]
    vendor = container.current().vendor  # first: a container whose settings cannot work answers 500, calling nothing
    request = parse_token_request(app, call.scope_values)
    token_fingerprint = parse_fingerprint(call.fingerprint)
    reported = vendor.report(request, call.caller, token_fingerprint)
    record_report("dropped" if reported.dropped else "kept")
    audit.answered("ok", 204, app=request.app, scope=request.scope, holder=reported.holder,
                   fingerprint=token_fingerprint, dropped=reported.dropped)
    if reported.charged_to:  # it dropped the cached token: the mint replacing it is paid for by the reporter
        audit.answered("ok", 204, charged_to=reported.charged_to)
    # Whether it dropped the cached token, or it was not the cached one any more: what the reporter is told.
    return Response(status_code=204, body="", headers={**NO_STORE, DROPPED_HEADER: str(reported.dropped).lower()})


@api.not_found
def not_found(_: NotFoundError) -> Response[str]:
    if api.context.get("audit") is not None:
        # The token resource, with an app name the route pattern cannot even hold.
        return _error_response(InvalidRequest(APP_NAME_RULE))
    return _error_response(VendingError("no such route"), status=404, code="not_found")


@api.exception_handler(VendingError)
def vending_error(error: VendingError) -> Response[str]:
    # An app's secret and an AWS service's refusal are logged here; invalid settings once per container,
    # where they are found (container.py).
    if isinstance(error, ServiceMisconfigured):
        logger.error("an AWS service refused the function's request: check its configuration",
                     extra={"service": error.dependency.value, "error_code": error.error_code})
    elif isinstance(error, ConfigurationError) and error.app is not None:
        logger.error("application secret is misconfigured", extra={"app": error.app, "problem": error.detail})
    return _error_response(error)


@api.exception_handler(Exception)
def unexpected_error(error: Exception) -> Response[str]:
    logger.exception("unexpected error")
    return _error_response(VendingError())


def _error_response(error: VendingError, status: int | None = None, code: str | None = None) -> Response[str]:
    code = code or error.code
    status = status or error.status
    audit: AuditRecord | None = api.context.get("audit")
    if audit is not None:
        (record_vend if audit.route == "vend" else record_report)(code)
        audit.answered(code, status, **error.audited)
    headers = dict(NO_STORE)
    if error.retry_after:
        headers["Retry-After"] = str(error.retry_after)
    body = {"error": code, "error_description": error.description}
    return Response(status_code=status, content_type="application/json", body=json.dumps(body), headers=headers)


def _is_scheduled(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.events" or "prewarm" in event


@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    start_invocation(getattr(context, "aws_request_id", None), (event.get("requestContext") or {}).get("requestId"))
    if _is_scheduled(event):
        from . import prewarm  # only scheduled runs need it

        try:
            current = container.current()
            current.settings  # noqa: B018 - invalid settings fail the run (its alarm fires), calling nothing
            return prewarm.run(event, current, getattr(context, "get_remaining_time_in_millis", None))
        finally:
            write_invocation_line()
    call = ApiCall.from_event(event)
    audit = AuditRecord.begin(call) if event.get("resource") == TOKEN_RESOURCE else None
    try:
        api.append_context(call=call, audit=audit)
        return _with_single_value_headers(api.resolve(event, context))
    finally:
        write_invocation_line(audit.properties if audit else None)


def _with_single_value_headers(response: dict[str, Any]) -> dict[str, Any]:
    # Powertools answers REST events with multiValueHeaders only; API Gateway reads either, and
    # callers of the function (tests, sam local, other tools) often read `headers`.
    multi = response.get("multiValueHeaders") or {}
    response.setdefault("headers", {name: values[-1] for name, values in multi.items() if values})
    return response
