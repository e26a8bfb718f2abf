"""The audit record: begun from what the caller sent, bounded, and completed by whatever answers."""

from __future__ import annotations

from token_vending.audit import MAX_AUDITED_INPUT, AuditRecord
from token_vending.observability import start_invocation
from token_vending.request_input import ApiCall

CALLER = "arn:aws:sts::111122223333:assumed-role/billing-service/s"


def call(method: str = "GET", app: str | None = "demo", scopes: tuple[str, ...] = ("cx.b cx.a",),
         fingerprint: str | None = None) -> ApiCall:
    return ApiCall(method=method, app=app, scope_values=scopes, fingerprint=fingerprint, caller_arn=CALLER)


def test_a_record_unanswered_says_internal_error_with_what_was_sent() -> None:
    start_invocation("function-request", "api-request")
    record = AuditRecord.begin(call())

    assert record is not None
    assert record.properties() == {
        "level": "INFO", "message": "vend", "function_request_id": "function-request", "correlation_id": "api-request",
        "audit": "vend", "outcome": "internal_error", "status": 500, "caller": CALLER, "app": "demo",
        "scope": "cx.b cx.a"}


def test_an_answer_completes_it_and_what_it_established_replaces_what_was_sent() -> None:
    record = AuditRecord.begin(call())
    assert record is not None

    record.answered("ok", 200, scope="cx.a cx.b", fingerprint="0123456789abcdef", source="table")

    properties = record.properties()
    assert (properties["outcome"], properties["status"], properties["scope"]) == ("ok", 200, "cx.a cx.b")
    assert (properties["fingerprint"], properties["source"]) == ("0123456789abcdef", "table")


def test_what_was_sent_is_bounded() -> None:
    record = AuditRecord.begin(call(app="a" * 1000, scopes=("x" * 600, "y" * 600), fingerprint="f" * 999,
                                    method="DELETE"))
    assert record is not None

    properties = record.properties()
    assert len(properties["app"]) == len(properties["scope"]) == len(properties["fingerprint"]) == MAX_AUDITED_INPUT
    assert properties["audit"] == "report"


def test_only_reports_carry_the_fingerprint_sent_and_other_methods_have_no_record() -> None:
    vend = AuditRecord.begin(call(fingerprint="0123456789abcdef"))

    assert vend is not None and "fingerprint" not in vend.properties()
    assert AuditRecord.begin(call(method="POST")) is None
