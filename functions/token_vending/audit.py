"""The audit record: one for every answer of the token routes, refusals included.

It is begun at the start of the handler from what the caller sent (so a request refused
before or during validation is audited too, its input bounded) and completed by whatever
answers: the route with its outcome (and the normalized request, the token's fingerprint,
where it came from), or the error handler with the error code. It travels in the
invocation's one EMF line (observability.py). It never holds a token: a fingerprint names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .observability import invocation_ids
from .request_input import ApiCall

ROUTES = {"GET": "vend", "DELETE": "report"}
MAX_AUDITED_INPUT = 256  # what a caller sent is audited as sent, up to this many characters


@dataclass
class AuditRecord:
    route: str  # vend | report
    fields: dict[str, Any]  # caller, app, scope, fingerprint, and what the answer adds
    outcome: str = "internal_error"  # `ok`, or the error code answered
    status: int = 500

    @classmethod
    def begin(cls, call: ApiCall) -> AuditRecord | None:
        """The record of a call to the token resource (None for another method: no answer to audit)."""
        route = ROUTES.get(call.method)
        if route is None:
            return None
        fields: dict[str, Any] = {"caller": call.caller_arn, "app": _bounded(call.app),
                                  "scope": _bounded(" ".join(call.scope_values))}
        if route == "report" and call.fingerprint is not None:
            fields["fingerprint"] = _bounded(call.fingerprint)
        return cls(route, fields)

    def answered(self, outcome: str, status: int, **fields: Any) -> None:
        """Complete the record: the outcome, and what the answer established (overriding what was sent)."""
        self.outcome, self.status = outcome, status
        self.fields.update(fields)

    def properties(self) -> dict[str, Any]:
        """The record as the invocation line's properties."""
        return {"level": "INFO", "message": self.route, **invocation_ids(), "audit": self.route,
                "outcome": self.outcome, "status": self.status, **self.fields}


def _bounded(value: str | None) -> str | None:
    return None if value is None else str(value)[:MAX_AUDITED_INPUT]

