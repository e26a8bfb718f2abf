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
    properties: dict[str, Any]  # the record as it is written: what was sent, then what the answer established

    @classmethod
    def begin(cls, call: ApiCall) -> AuditRecord | None:
        """The record of a call to the token resource (None for another method: no answer to audit)."""
        route = ROUTES.get(call.method)
        if route is None:
            return None
        properties = {"level": "INFO", "message": route, **invocation_ids(), "audit": route,
                      "outcome": "internal_error", "status": 500, "caller": call.caller_arn,
                      "app": _bounded(call.app), "scope": _bounded(" ".join(call.scope_values))}
        if route == "report" and call.fingerprint is not None:
            properties["fingerprint"] = _bounded(call.fingerprint)
        return cls(route, properties)

    def answered(self, outcome: str, status: int, **fields: Any) -> None:
        """Complete the record: the outcome, and what the answer established (overriding what was sent)."""
        self.properties.update(outcome=outcome, status=status, **fields)


def _bounded(value: str | None) -> str | None:
    return None if value is None else str(value)[:MAX_AUDITED_INPUT]
