"""How the shared cache (DynamoDB, KMS) has answered during one request.

A place that can go on without a failed service catches StoreUnavailable itself, notes it here and
says, in its own lines, what it does instead. The first failure of each service in a request is
recorded (a Degraded_<service> metric and a log line); later ones only skip that service.
Misconfiguration is never noted here: it is a ServiceMisconfigured error, a 500 (aws_errors.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Dependency, StoreUnavailable
from .observability import record_store_degraded


@dataclass
class StoreHealth:
    failed: set[Dependency] = field(default_factory=set)

    @property
    def table_answers(self) -> bool:
        return Dependency.DYNAMODB not in self.failed

    @property
    def kms_answers(self) -> bool:
        return Dependency.KMS not in self.failed

    def note(self, outage: StoreUnavailable) -> None:
        """Record an outage of the service (once per request); the caller goes on without it."""
        if outage.dependency not in self.failed:
            self.failed.add(outage.dependency)
            record_store_degraded(outage.dependency, str(outage))
