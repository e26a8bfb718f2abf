"""Logger, Tracer and Metrics, created once for the whole function.

Nothing here ever receives a token or a secret: callers pass fingerprints.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = "token-vending"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace="SangomaTokenVending", service=SERVICE)


def record_degraded(dependency: str) -> None:
    """A backing service failed and the vend went on without it."""
    metrics.add_metric(name=f"Degraded_{dependency}", unit=MetricUnit.Count, value=1)


def record_vend(outcome: str, tier: str | None = None) -> None:
    metrics.add_metric(name=f"Vend_{outcome}", unit=MetricUnit.Count, value=1)
    if tier:
        metrics.add_metric(name=f"CacheTier_{tier}", unit=MetricUnit.Count, value=1)


def record_upstream(outcome: str, latency_ms: float | None = None) -> None:
    metrics.add_metric(name="UpstreamRequests", unit=MetricUnit.Count, value=1)
    if outcome != "ok":
        metrics.add_metric(name=f"UpstreamErrors_{outcome}", unit=MetricUnit.Count, value=1)
    if latency_ms is not None:
        metrics.add_metric(name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=latency_ms)


def record_single_flight_wait() -> None:
    metrics.add_metric(name="SingleFlightWaits", unit=MetricUnit.Count, value=1)


def record_invalidation(dropped: bool) -> None:
    metrics.add_metric(name="InvalidationReports", unit=MetricUnit.Count, value=1)
    if dropped:
        metrics.add_metric(name="InvalidationsApplied", unit=MetricUnit.Count, value=1)
